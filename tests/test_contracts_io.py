"""Every verb against one shared set of output cases and one shared set of hostile inputs.

Outputs (tests/contracts.py: WRITERS): the output is an input, inside an input folder, a file
of the run read, a file of another run, in a read-only folder, or written to a full disk. In
no case is an input, or a file of any run, replaced; a refusal is one line without a
traceback; a full disk leaves the earlier result whole.

Inputs (READERS): a FIFO, a device (/dev/zero), a link out of the folder, a file over the byte
or pixel limit, a text file that is not UTF-8, put in each input a verb reads. No verb hangs,
opens a FIFO or device, or prints a traceback; special files are refused naming them.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unetkit.core.files as files_mod
from conftest import run_cli
from contracts import FIXED_OUTPUTS, NOT_READING, NOT_WRITING, READERS, TINY, WRITERS, Ctx
from run_fixtures import make_run
from unetkit.cli.main import build_parser
from unetkit.core.files import RUN_FILES
from unetkit.data.synthetic import write_dataset

OUTPUT_CASES = ("an input", "inside an input folder", "a file of the read run",
                "a file of another run", "read-only folder", "full disk")
INPUT_CASES = ("fifo", "device", "link out of the folder", "over the limit", "not UTF-8")
TEXT_SLOTS = ("stems", "labels", "run config")
DEADLINE_S = 60  # a verb that waits on a FIFO is stopped here and fails the test


def verbs() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)


def test_every_verb_of_the_command_line_is_registered():
    written = {w.verb for w in WRITERS} | set(FIXED_OUTPUTS) | set(NOT_WRITING)
    read = {r.verb for r in READERS} | set(NOT_READING)
    assert verbs() - written == set(), "register these verbs' outputs in tests/contracts.py"
    assert verbs() - read == set(), "register these verbs' inputs in tests/contracts.py"
    assert written <= verbs() and read <= verbs(), "verbs registered that no longer exist"


# -- the shared inputs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Ctx:
    root = tmp_path_factory.mktemp("contracts")
    data = write_dataset(root / "data", count=8, size=32)
    run = make_run(root / "run", TINY)
    other = make_run(root / "other", TINY, seed=1)
    maps = root / "maps"
    maps.mkdir()
    for mask in (data / "masks").iterdir():
        shutil.copy(mask, maps / f"{mask.stem}_prob.png")
    stems = root / "stems.txt"
    stems.write_text("".join(f"{p.stem}\n" for p in sorted((data / "images").iterdir())))
    submission = root / "submission"
    shutil.copytree(data / "images", submission / "test")
    ctx = Ctx(data, run, other, maps, root / "labels.json", stems, submission, root)
    run_cli("predict", str(run), str(data / "images"), "--format", "coco", "--out",
            str(ctx.labels), "--quiet")
    return ctx


@pytest.fixture
def ctx(base, tmp_path) -> Ctx:
    """A copy of the shared inputs that a test may damage."""
    copies = {}
    for name in ("data", "run", "other", "maps", "labels", "stems", "submission"):
        src = getattr(base, name)
        dst = tmp_path / src.name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
        copies[name] = dst
    return Ctx(**copies, tmp=tmp_path)


def snapshot(*folders: Path) -> dict[str, bytes]:
    out = {}
    for folder in folders:
        paths = [folder] if folder.is_file() else sorted(folder.rglob("*"))
        out.update({str(p): p.read_bytes() for p in paths if p.is_file()})
    return out


def cli(*args: str, **kwargs):
    """`unetkit ARGS --quiet` in this process, stopped after DEADLINE_S."""
    def stop(*_):
        raise TimeoutError(f"unetkit {' '.join(args)} still running after {DEADLINE_S} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(DEADLINE_S)
    try:
        return run_cli(*args, "--quiet", check=False, **kwargs)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def one_line_error(proc, *words: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    return err


# -- outputs --------------------------------------------------------------------------------


def output_path(writer, case: str, ctx: Ctx) -> Path:
    name = "out" + (writer.suffix if writer.kind == "file" else "")
    if case == "an input":
        return writer.input_file(ctx) if writer.kind == "file" else writer.input_dir(ctx)
    if case == "inside an input folder":
        return writer.input_dir(ctx) / name
    if case == "a file of the read run":
        return ctx.run / "config.json" if writer.kind == "file" else ctx.run
    if case == "a file of another run":
        return ctx.other / "config.json" if writer.kind == "file" else ctx.other
    return ctx.tmp / "result" / name


def fail_writes_from(monkeypatch, n: int, err: int) -> list[int]:
    """Make the n-th file unetkit writes (and every later one) fail with OSError(err)."""
    real, calls = files_mod._fill, []

    def fill(f, write, path):
        calls.append(1)
        if len(calls) >= n:
            raise OSError(err, os.strerror(err))
        real(f, write, path)

    monkeypatch.setattr(files_mod, "_fill", fill)
    return calls


def count_writes(monkeypatch) -> list[int]:
    real, calls = files_mod._fill, []

    def fill(f, write, path):
        calls.append(1)
        real(f, write, path)

    monkeypatch.setattr(files_mod, "_fill", fill)
    return calls


# The cases that apply to each writer: a case a writer declares inapplicable (`skip`, with the
# reason beside it in contracts.py) is not generated at all, so a run under CI, where every
# skip fails, has none to explain.
@pytest.mark.parametrize("writer,case", [(w, c) for w in WRITERS for c in OUTPUT_CASES
                                         if c not in w.skip],
                         ids=lambda v: v.name if hasattr(v, "name") else v)
def test_no_output_replaces_an_input_or_a_run_and_failures_keep_the_earlier_result(
        writer, case, ctx, monkeypatch):
    if case == "a file of the read run" and not writer.reads_run:
        case = "a file of another run"
    out = output_path(writer, case, ctx)
    guarded = (ctx.data, ctx.maps, ctx.labels, ctx.stems, ctx.submission)
    before = snapshot(*guarded)
    runs_before = {run: snapshot(run) for run in (ctx.run, ctx.other)}
    if case == "read-only folder":
        _read_only(monkeypatch, out.parent)
        proc = cli(*writer.argv(ctx, out))
        one_line_error(proc, str(out.parent))
    elif case == "full disk":
        _full_disk(writer, ctx, out, monkeypatch)
        return
    else:
        proc = cli(*writer.argv(ctx, out))
        assert "Traceback" not in proc.stderr, proc.stderr
        refused = case in ("an input", "inside an input folder") or writer.kind == "file"
        if refused:
            one_line_error(proc, out.name)
        else:
            assert proc.returncode in (0, 2), proc.stderr
            if proc.returncode:
                one_line_error(proc)
    assert snapshot(*guarded) == before
    for run, files in runs_before.items():
        after = snapshot(run)
        assert {p: after.get(p) for p in files} == files, f"a file of {run} was replaced"
        added = {Path(p).name for p in after.keys() - files.keys()
                 if Path(p).parent == run}
        assert not added & set(RUN_FILES), f"{run} became another model: {added}"


def _read_only(monkeypatch, folder: Path) -> None:
    """`folder` refuses new files, as a read-only folder does (chmod does not stop root)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    real = files_mod.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(files_mod.tempfile, "mkstemp", mkstemp)


def _full_disk(writer, ctx: Ctx, out: Path, monkeypatch) -> None:
    """The disk fills up at the result's last file: one line, and the earlier result (if the
    verb writes over one) is whole, with no temporary file left."""
    dry = ctx.tmp / "dry" / out.name
    with monkeypatch.context() as m:
        calls = count_writes(m)
        assert cli(*writer.argv(ctx, dry)).returncode == 0
    if writer.rerun:
        assert cli(*writer.argv(ctx, out)).returncode == 0
    before = snapshot(out.parent)
    with monkeypatch.context() as m:
        fail_writes_from(m, len(calls), errno.ENOSPC)
        err = one_line_error(cli(*writer.argv(ctx, out)), "No space left on device")
    assert snapshot(out.parent) == before, err
    assert not list(out.parent.rglob(f"*{files_mod.TMP_SUFFIX}"))


# -- inputs ---------------------------------------------------------------------------------


def slot_file(slot: str, ctx: Ctx) -> Path:
    """The file of `slot` that the hostile file replaces."""
    folders = {"images": ctx.data / "images", "masks": ctx.data / "masks", "maps": ctx.maps}
    if slot in folders:
        return sorted(folders[slot].iterdir())[0]
    return {"stems": ctx.stems, "labels": ctx.labels, "run config": ctx.run / "config.json"}[slot]


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A PNG of 7000x6000 pixels (42 M, over the pixel budget), 40 KB on disk."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.fromarray(np.zeros((6000, 7000), np.uint8)).save(path)
    return path


def text_limit(path: Path) -> int:
    """The byte limit of a text input: a stems file, a label file, a run's config.json."""
    from unetkit.curation.reading import MAX_LABEL_BYTES
    from unetkit.data.listing import MAX_STEMS_BYTES
    from unetkit.runs.folder import MAX_CARD_BYTES

    return {".txt": MAX_STEMS_BYTES, ".json": max(MAX_LABEL_BYTES, MAX_CARD_BYTES)}[path.suffix]


def plant(case: str, target: Path, bomb: Path, outside: Path) -> None:
    text = target.suffix in (".txt", ".json")
    original = target.read_bytes()
    target.unlink()
    target = target.with_suffix(".png") if target.suffix == ".jpg" and case == "over the limit" \
        else target
    if case == "fifo":
        os.mkfifo(target)
    elif case == "device":
        target.symlink_to("/dev/zero")
    elif case == "link out of the folder":
        outside.write_bytes(original)
        target.symlink_to(outside)
    elif case == "over the limit":
        if text:
            target.write_bytes(b" " * (text_limit(target) + 1))
        else:
            shutil.copy(bomb, target)
    else:
        target.write_bytes(b"\xff\xfe\x00 not UTF-8 \xc3\x28\n" + original)


# "not UTF-8" applies to text inputs only: an image is not text (a broken image is
# tests/test_hostile_inputs.py's case), so that pair is not generated.
@pytest.mark.parametrize("reader,slot,case", [
    (r, s, c) for r in READERS for s in r.slots for c in INPUT_CASES
    if c != "not UTF-8" or s in TEXT_SLOTS], ids=lambda v: v.name if hasattr(v, "name") else v)
def test_hostile_inputs_are_refused_in_one_line_and_never_hang(reader, slot, case, ctx, bomb):
    text = slot in TEXT_SLOTS
    target = slot_file(slot, ctx)
    plant(case, target, bomb, ctx.tmp / f"elsewhere{target.suffix}")
    proc = cli(*reader.argv(ctx, ctx.tmp / "out"))
    err = proc.stderr
    assert "Traceback" not in err and "MemoryError" not in err, err
    must_refuse = case in ("fifo", "device") or (text and case != "link out of the folder") \
        or (slot == "run config" and case == "link out of the folder")
    if must_refuse:  # refused, naming the file (check-data lists its problems on stdout)
        assert proc.returncode != 0, f"{case} in {slot} was accepted:\n{proc.stdout}"
        assert target.stem in err + proc.stdout, err
    if proc.returncode == 2:  # one line, or one line and the list of the problems found
        lines = err.strip().splitlines()
        assert lines[0].startswith(f"unetkit {reader.verb}: "), err
        assert all(line.startswith("  ") for line in lines[1:]), err
