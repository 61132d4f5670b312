"""Writing outputs: one atomic writer, and a check that outputs never replace what they must not.

Every file unetkit writes (masks, summaries, weights, checkpoints, ONNX models, CSVs, caches)
goes through `atomic_write`: the bytes go to a temporary file created exclusively in the target
folder (`tempfile.mkstemp`: a random name opened with O_CREAT|O_EXCL, so a planted file or a
symbolic link is never written through), which is then renamed over the target. A crash, a full
disk or an exception leaves the previous file intact and removes the temporary file; a rename
replaces a symbolic link at the target rather than writing where it points.

`check_outputs` is called by every command before it writes anything: it refuses outputs that
would replace an input, a file of a run folder, or each other.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".unetkit-tmp"  # every temporary file ends so: leftovers are recognised and removed

# The files that make a run folder what it is; no output of another command may replace them.
RUN_FILES = ("config.yaml", "config.json", "model.safetensors", "metrics.csv", "curves.png")
RUN_SUBFOLDERS = ("checkpoints", "samples")


class OutputError(ValueError):
    """An output that cannot or must not be written; the message names the path and the fix."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file; mkstemp's is 0600


@contextmanager
def temp_beside(path: str | Path) -> Iterator[tuple[BinaryIO, Path]]:
    """An exclusively created temporary file next to `path`, open for binary writing.

    Yields (file, its path); the file is removed unless the caller renamed it away."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
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


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None],
                 durable: bool = False) -> None:
    """Call `write(f)` on a binary file object, then move the result to `path` in one rename.

    `durable`: the bytes are flushed to the disk before the rename (weights, checkpoints), so a
    power cut never leaves a renamed but empty file."""
    path = Path(path)
    try:
        with temp_beside(path) as (f, tmp):
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
            f.close()
            os.replace(tmp, path)
    except OSError as exc:
        if exc.errno is None:  # not the file system speaking (e.g. a test's simulated crash)
            raise
        raise OutputError(f"{path}: could not be written ({exc.strerror}); nothing was "
                          "replaced; free some space or choose another folder") from None


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


def run_folder_files(run_dir: str | Path) -> list[Path]:
    """The files of a run folder that no other output may replace."""
    run_dir = Path(run_dir)
    files = [run_dir / name for name in RUN_FILES]
    for sub in RUN_SUBFOLDERS:
        if (run_dir / sub).is_dir():
            files += [p for p in (run_dir / sub).rglob("*") if p.is_file()]
    return files


def check_outputs(planned: Iterable[tuple[Path, str]], inputs: Iterable[Path] = (),
                  input_dirs: Iterable[Path] = (), run_dirs: Iterable[Path] = (),
                  new_only: Iterable[Path] = ()) -> None:
    """Refuse, before anything is written, outputs that would destroy or hide something.

    `planned`: (output path, what it is made from) pairs. An output may not be an input file,
    lie inside an input folder, be a file of a run folder, or be planned twice (two inputs with
    the same stem, or `x.png` beside `x_overlay.png` with overlays): the error names both.
    `new_only`: outputs the user did not name one by one (an export's sidecar, the files of a
    Hub folder), which may not replace a file already there; the caller leaves them out when
    given `--force`."""

    protected = {_key(Path(p)): f"the input {p}" for p in inputs}
    for run_dir in run_dirs:
        protected.update({_key(p): f"{p}, a file of the run folder {run_dir}"
                          for p in run_folder_files(run_dir)})
    folders = [(Path(d).resolve(), Path(d)) for d in input_dirs]
    seen: dict[str, str] = {}
    for out, source in planned:
        out = Path(out)
        key = _key(out)
        if key in protected:
            raise OutputError(f"{out} would replace {protected[key]}; choose another --out")
        resolved = out.resolve()
        for real, given in folders:
            if resolved.is_relative_to(real):
                raise OutputError(f"{out} would be written inside the input folder {given}, "
                                  "among the images; choose another --out")
        if key in seen and seen[key] != source:
            raise OutputError(f"{out} would be written for both {seen[key]} and {source}; "
                              "rename one of them, or predict them into separate --out folders")
        seen[key] = source
    there = [str(out) for out in new_only if os.path.lexists(out)]
    if there:
        raise OutputError(f"{', '.join(there)} {'is' if len(there) == 1 else 'are'} already "
                          f"there and would be replaced; move {'it' if len(there) == 1 else 'them'}"
                          " away, choose another --out, or give --force to replace them")


def written_by_unetkit(path: str | Path) -> bool:
    """Whether a file is one unetkit wrote (so an export may replace it without --force): a
    JSON object naming `unetkit_version` (sidecars, model cards) or a model card README.md."""
    path = Path(path)
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 1_000_000:
            return False
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".md":
        return text.startswith("---\nlibrary_name: unetkit\n")
    import json

    try:
        values = json.loads(text)
    except ValueError:
        return False
    return isinstance(values, dict) and "unetkit_version" in values


# ---------------------------------------------------------------------------------------------
# Reading untrusted files with a bound.


def read_limited(path: str | Path, max_bytes: int, what: str, inside: str | Path | None = None,
                 error: type[Exception] = ValueError,
                 too_large: str = "replace it with the file unetkit wrote") -> bytes:
    """The bytes of `path` (`what` it should be, e.g. "a unetkit config.json"), read with a
    bound: more than `max_bytes` (the message ends with the fix `too_large`), a FIFO, device or
    folder, or (given `inside`, the folder it belongs to) a symbolic link that leads out of
    `inside` raise `error` naming the file. A file that does not exist raises
    FileNotFoundError, for the caller to word."""
    path = Path(path)
    real = path.resolve()
    if inside is not None and not real.is_relative_to(Path(inside).resolve()):
        raise error(f"{path}: a link to {real}, outside the folder {inside}; replace the link "
                    f"with a copy of the file ({what})")
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc}); replace it with "
                    f"{what}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{path}: not a regular file (a FIFO, device or folder); replace it "
                        f"with {what}")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{path}: over {max_bytes:,} bytes, too large for {what}; {too_large}")
    return data
