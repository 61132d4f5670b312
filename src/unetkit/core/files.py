"""Writing outputs: one atomic writer, and a check that outputs never replace what they must not.

Every file unetkit writes (masks, summaries, weights, checkpoints, ONNX models, CSVs, caches)
goes through `atomic_write`: the bytes go to a temporary file created exclusively in the target
folder (`tempfile.mkstemp`: a random name opened with O_CREAT|O_EXCL, so a planted file or a
symbolic link is never written through), which is then renamed over the target. A crash, a full
disk or an exception leaves the previous file intact and removes the temporary file; a rename
replaces a symbolic link at the target rather than writing where it points.

A result made of several files (a report, an audit, scores) is written inside `output_set()`:
every file goes to its temporary first and they are renamed over the old ones together at the
end, so a failure half-way (a full disk) leaves the earlier result whole.

`check_outputs` is called by every command before it writes anything: it refuses outputs that
would replace an input, lie inside an input folder, replace a file of any run folder (the one
being read or another, found by its marker files), or replace each other.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO

from unetkit.core.reading import (
    open_regular,
    read_limited,
    read_text_limited,
    refuse_special,
    written_by_unetkit,
)

__all__ = ["OutputError", "atomic_write", "check_outputs", "output_set", "open_regular",
           "read_limited", "read_text_limited", "refuse_special", "written_by_unetkit"]

TMP_SUFFIX = ".unetkit-tmp"  # every temporary file ends so: leftovers are recognised and removed

# The files that make a run folder what it is; no output of another command may replace them
# (a verb may replace its own: `check_outputs(owned=...)`), nor anything in its subfolders.
RUN_FILES = ("config.yaml", "config.json", "model.safetensors", "metrics.csv", "curves.png",
             "ensemble.json", "folds.json", "operating_point.json", "tracking.json",
             "model.onnx", "model.json", "model.int8.onnx", "model.int8.json")
RUN_SUBFOLDERS = ("checkpoints", "samples", "folds", "tensorboard", "mlruns", "mlartifacts",
                  "wandb")
# A folder is a run folder (trained, training, an ensemble, a cross-validation, a Hub export)
# when it holds one of these sets of files or folders.
RUN_MARKERS = (("config.json", "model.safetensors"), ("config.yaml", "checkpoints"),
               ("config.yaml", "metrics.csv"), ("ensemble.json",), ("folds.json",))


class OutputError(ValueError):
    """An output that cannot or must not be written; the message names the path and the fix."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file; mkstemp's is 0600


def make_folder(folder: str | Path) -> Path:
    """`folder` and its parents, made if missing, or an OutputError naming the fix (a file in
    the way, no permission)."""
    folder = Path(folder)
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{folder}: cannot write here ({parent} is a file, not a "
                              "folder); choose an output folder that is a folder or does not "
                              "exist yet, or move the file away")
        if parent.exists():
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write here ({exc.strerror or exc}); choose a "
                          "writable folder") from None
    return folder


@contextmanager
def temp_beside(path: str | Path) -> Iterator[tuple[BinaryIO, Path]]:
    """An exclusively created temporary file next to `path`, open for binary writing.

    Yields (file, its path); the file is removed unless the caller renamed it away."""
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc}); choose a "
                          "writable folder") from None
    tmp = Path(name)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def _fill(f: BinaryIO, write: Callable[[BinaryIO], None], path: Path) -> None:
    """The one place the bytes of every output (`path`) are produced (a test makes it fail as
    a full disk would)."""
    write(f)


def _write_temp(path: Path, write: Callable[[BinaryIO], None], durable: bool) -> Path:
    """A finished temporary file beside `path` holding what `write` wrote; removed on error."""
    with temp_beside(path) as (f, tmp):
        _fill(f, write, path)
        f.flush()
        if durable:
            os.fsync(f.fileno())
        f.close()
        kept = tmp.with_name(tmp.name[:-len(TMP_SUFFIX)] + ".done" + TMP_SUFFIX)
        os.replace(tmp, kept)  # out of temp_beside's clean-up: the caller owns it now
    return kept


class OutputSet:
    """The files of one result: finished temporaries, renamed over the old files together
    (see `output_set`)."""

    def __init__(self) -> None:
        self.pending: dict[Path, Path] = {}  # target -> its finished temporary file
        self.lock = threading.Lock()  # threads of one verb write into one set (predict)

    def add(self, path: Path, tmp: Path) -> None:
        with self.lock:
            old = self.pending.pop(path, None)
            if old is not None:  # written twice: the later bytes count
                old.unlink(missing_ok=True)
            self.pending[path] = tmp

    def commit(self) -> None:
        for path, tmp in list(self.pending.items()):
            os.replace(tmp, path)  # a rename: no space needed, the bytes are already written
            del self.pending[path]

    def discard(self) -> None:
        for tmp in self.pending.values():
            tmp.unlink(missing_ok=True)
        self.pending.clear()


_current: ContextVar[OutputSet | None] = ContextVar("unetkit_output_set", default=None)


@contextmanager
def output_set() -> Iterator[OutputSet]:
    """Every file written inside (by `atomic_write` and what uses it) replaces its old version
    only when the block ends without an error, all together; on an error no file is replaced
    and the temporaries are removed. A nested set joins the outer one."""
    if _current.get() is not None:
        yield _current.get()
        return
    files = OutputSet()
    token = _current.set(files)
    try:
        yield files
        files.commit()
    finally:
        _current.reset(token)
        files.discard()


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None],
                 durable: bool = False) -> None:
    """Call `write(f)` on a binary file object, then move the result to `path` in one rename
    (inside `output_set()`: when the set ends, with the set's other files).

    `durable`: the bytes are flushed to the disk before the rename (weights, checkpoints), so a
    power cut never leaves a renamed but empty file."""
    path = Path(path)
    files = _current.get()
    try:
        tmp = _write_temp(path, write, durable)
        if files is not None:
            files.add(path, tmp)
            return
        try:
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno is None:  # not the file system speaking (e.g. a test's simulated crash)
            raise
        whole = ", the earlier result is whole" if files is not None else ""
        raise OutputError(f"{path}: could not be written ({exc.strerror}); nothing was "
                          f"replaced{whole}; free some space or choose another folder") from None


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def remove_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted unetkit left in `folder` (and below it)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.rglob(f"*{TMP_SUFFIX}") if p.is_file() or p.is_symlink()]
    for p in found:
        p.unlink(missing_ok=True)
    return found


# ---------------------------------------------------------------------------------------------
# Outputs that must not collide.


def _key(path: Path) -> str:
    """One key per file a path names: resolved (links, ..) and case-folded, so outputs stay
    distinct on case-insensitive file systems too."""
    return os.path.normcase(str(path.resolve())).casefold()


def is_run_folder(folder: str | Path) -> bool:
    """Whether `folder` holds a run (see RUN_MARKERS): trained, training, an ensemble, a
    cross-validation or a Hub export."""
    folder = Path(folder)
    return any(all(os.path.lexists(folder / name) for name in marker) for marker in RUN_MARKERS)


def run_folder_files(run_dir: str | Path) -> list[Path]:
    """The files of a run folder that no other output may replace."""
    run_dir = Path(run_dir)
    files = [run_dir / name for name in RUN_FILES]
    for sub in RUN_SUBFOLDERS:
        if (run_dir / sub).is_dir():
            files += [p for p in (run_dir / sub).rglob("*") if p.is_file()]
    return files


def _run_of(folder: Path, cache: dict) -> Path | None:
    """The run folder `folder` is, or lies in, if any (cached: outputs share folders)."""
    if folder not in cache:
        above = folder.parent if folder.parent != folder else None
        cache[folder] = folder if is_run_folder(folder) else \
            (_run_of(above, cache) if above is not None else None)
    return cache[folder]


def _run_file(out: Path, run: Path) -> bool:
    """Whether `out` (resolved) is one of the files that make `run` a run folder."""
    parts = out.relative_to(run).parts
    return (len(parts) == 1 and parts[0] in RUN_FILES) or \
        (len(parts) > 1 and parts[0] in RUN_SUBFOLDERS)


def _folder_in_the_way(out: Path) -> Path | None:
    """A file standing where a folder of `out`'s path must be (`--out report.md/`)."""
    for parent in out.parents:
        if os.path.lexists(parent):
            return parent if not parent.is_dir() else None
    return None


def check_outputs(planned: Iterable[tuple[Path, str]], inputs: Iterable[Path] = (),
                  input_dirs: Iterable[Path] = (), run_dirs: Iterable[Path] = (),
                  new_only: Iterable[Path] = (), owned: Iterable[Path] = (),
                  folders: Iterable[Path] = (), option: str = "--out") -> None:
    """Refuse, before anything is written, outputs that would destroy or hide something.

    `planned`: (output path, what it is made from) pairs. An output may not be an input file,
    lie inside an input folder, be a file of a run folder (of `run_dirs`, or any folder
    `is_run_folder` finds at or above the output: another run is never replaced either), or be
    planned twice (two inputs with the same stem, or `x.png` beside `x_overlay.png` with
    overlays): the error names both. `owned`: run files this verb itself keeps up to date
    (calibrate's operating_point.json, an ONNX export into its own run), which it may replace.
    `new_only`: outputs the user did not name one by one (an export's sidecar, the files of a
    Hub folder), which may not replace a file already there; the caller leaves them out when
    given `--force`. `folders`: output folders (a run to train) that may not lie inside an
    input folder. `option`: the option that chose the outputs, named in the fix."""
    fix = f"choose another {option}"
    allowed = {_key(Path(p)) for p in owned}
    protected = {}
    for run_dir in run_dirs:
        protected.update({_key(p): f"{p}, a file of the run folder {run_dir}"
                          for p in run_folder_files(run_dir) if _key(p) not in allowed})
    protected.update({_key(Path(p)): f"the input {p}" for p in inputs})  # never owned
    read_dirs = [(Path(d).resolve(), Path(d)) for d in input_dirs]
    runs, seen = {}, {}
    for folder in folders:
        blocker = _folder_in_the_way(Path(folder) / "x")
        if blocker is not None:
            raise OutputError(f"{blocker} is a file, not a folder; {fix} (a folder that does "
                              "not exist yet, or a folder)")
        real = Path(folder).resolve()
        inside = [given for r, given in read_dirs if real.is_relative_to(r)]
        if inside:
            raise OutputError(f"{folder} would be written inside the input folder {inside[0]}, "
                              f"among the files it reads; {fix}")
    for out, source in planned:
        out = Path(out)
        key = _key(out)
        blocker = _folder_in_the_way(out)
        if blocker is not None:
            raise OutputError(f"{blocker} is a file, not a folder, so {out} cannot be written; "
                              f"{fix} (a folder that does not exist yet, or a folder)")
        if key in protected:
            raise OutputError(f"{out} would replace {protected[key]}; {fix}")
        resolved = out.resolve()
        for real, given in read_dirs:
            if resolved.is_relative_to(real):
                raise OutputError(f"{out} would be written inside the input folder {given}, "
                                  f"among the files it reads; {fix}")
        run = _run_of(resolved.parent, runs)
        if run is not None and key not in allowed and _run_file(resolved, run):
            raise OutputError(f"{out} would replace {resolved.relative_to(run)}, a file of the "
                              f"run folder {run}; {fix}")
        if os.path.isdir(out):
            raise OutputError(f"{out} is a folder, where a file would be written; {fix}")
        if key in seen and seen[key] != source:
            raise OutputError(f"{out} would be written for both {seen[key]} and {source}; "
                              "rename one of them, or predict them into separate --out folders")
        seen[key] = source
    there = [str(out) for out in new_only if os.path.lexists(out)]
    if there:
        raise OutputError(f"{', '.join(there)} {'is' if len(there) == 1 else 'are'} already "
                          f"there and would be replaced; move {'it' if len(there) == 1 else 'them'}"
                          f" away, {fix}, or give --force to replace them")


def check_new_run_folder(folder: str | Path, what: str, option: str = "--out",
                         continues: Callable[[Path], bool] = lambda p: False) -> None:
    """Refuse to make `what` (e.g. "a 5-fold cross-validation") in a folder that already holds
    another run: a run folder is never repurposed. `continues(folder)`: the folder is an
    interrupted `what`, which may go on."""
    folder = Path(folder)
    if folder.is_dir() and is_run_folder(folder) and not continues(folder):
        there = ", ".join(n for n in (*RUN_FILES, *RUN_SUBFOLDERS) if (folder / n).exists())
        raise OutputError(f"{folder} already holds another run ({there}); {what} never turns "
                          f"a run into another model: choose another {option}")
