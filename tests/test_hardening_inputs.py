"""Inputs a user gets wrong, tried through the real command: a mistyped or hostile table, an
export over the user's files, a start that fails half-way, operating points out of range.
Every case ends in one line naming the file and the fix (exit 2), never a traceback or a
silent wrong result."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import run_cli
from run_fixtures import make_run
from unetkit import config as config_mod
from unetkit.data.folders import DataError, pair_items
from unetkit.data.splits import split_items
from unetkit.data.tables import MAX_TABLE_BYTES, read_table

TINY = ["model.base_channels=4", "model.depth=2", "data.image_size=[32,32]"]
TRAIN = [*TINY, "train.epochs=1", "train.batch_size=4", "train.device='cpu'", "train.samples=0",
         "data.split.val_fraction=0.25"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def inproc(*args: str) -> subprocess.CompletedProcess:
    """`unetkit ARGS` in this process, whatever its exit code."""
    return run_cli(*args, check=False)


def clean_error(proc, *words: str, lines: int = 1) -> str:
    """Exit 2, one line (a list of bad files: one line each), no traceback, and it says what
    it must; returns it."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{err}"
    assert "Traceback" not in err and len(err.splitlines()) == lines, err
    for word in words:
        assert word in err, f"{word!r} not in:\n{err}"
    return err


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from unetkit.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("inputs"), count=12, size=32)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("inputs-run") / "run", TINY)


def hostile_tables(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a CSV a user or an attacker might give, a word the error must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cases = {
        "random bytes": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "UTF-8"),
        "one huge field": (b"frame,sequence\n1," + b"x" * 200_000 + b"\n", "characters"),
        "header only": (b"frame,sequence\n", "no rows"),
        "duplicate frame": (b"frame,sequence\n1,a\n2,a\n1,b\n", "rows 2, 4"),
    }
    out = {}
    for i, (name, (content, word)) in enumerate(cases.items()):
        path = folder / f"table{i}.csv"
        path.write_bytes(content)
        out[name] = (path, word)
    big = folder / "big.csv"  # sparse: the size is refused from the file system, unread
    with big.open("wb") as f:
        f.write(b"frame,sequence\n")
        f.truncate(MAX_TABLE_BYTES + 1)
    out["over the byte limit"] = (big, "MB")
    return out


# -- 1. a mistyped group table is an error, not an ungrouped split ------------------------------


def test_missing_group_table_is_an_error_not_a_silent_ungrouped_split(data, tmp_path):
    """`train --set data.split.group_table=typo.csv` used to train without groups (exit 0),
    leaking frames of one video into both splits."""
    out = tmp_path / "run"
    group = ["data.split.group_table=typo.csv", "data.split.group_column=sequence"]
    err = clean_error(inproc("train", "--recipe", "demo", "--data", str(data), "--out", str(out),
                             "--quiet", "--set", *TRAIN, *group),
                      "typo.csv", "data.split.group_table", "data root")
    assert str(data / "typo.csv") in err
    assert not (out / "config.yaml").exists()  # nothing of a run is left (see item 3)
    clean_error(inproc("train", "--recipe", "demo", "--data", str(data), "--out", str(out),
                       "--quiet", "--folds", "2", "--set", *TRAIN, *group), "typo.csv")
    # The same rule wherever a split is made: evaluate's val split, an absolute path.
    cfg = config_mod.load(overrides=[f"data.split.group_table={tmp_path / 'none.csv'}",
                                     "data.split.group_column=sequence"])
    items, _ = pair_items(data, cfg.data)
    with pytest.raises(DataError, match="none.csv"):
        split_items(items, data, cfg.data.split)
    # A table that is there groups as before: relative to the data root, or absolute.
    table = tmp_path / "groups.csv"
    table.write_text("frame,sequence\n" + "".join(f"{it.name},s{i % 3}\n"
                                                  for i, it in enumerate(items)))
    cfg.data.split.group_table = str(table)
    splits = split_items(items, data, cfg.data.split)
    seq = {it.name: f"s{i % 3}" for i, it in enumerate(items)}
    assert not {seq[i.name] for i in splits["train"]} & {seq[i.name] for i in splits["val"]}


# -- 2. export never replaces a user's file unless --force ---------------------------------------


def test_export_refuses_to_replace_a_users_files_unless_forced(run, tmp_path):
    """`export --format onnx --out exo/m.onnx` used to replace the user's exo/m.json with its
    sidecar, and `--format hub` a folder's README.md and config.json."""
    exo = tmp_path / "exo"
    exo.mkdir()
    (exo / "m.json").write_text('{"mine": true}')
    clean_error(inproc("export", str(run), "--format", "onnx", "--out", str(exo / "m.onnx")),
                str(exo / "m.json"), "--force")
    assert (exo / "m.json").read_text() == '{"mine": true}' and not (exo / "m.onnx").exists()
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "README.md").write_text("my notes")
    (hub / "config.json").write_text("{}")
    before = snapshot(hub)
    clean_error(inproc("export", str(run), "--format", "hub", "--out", str(hub)),
                "README.md", "--force")
    assert snapshot(hub) == before
    # The run folder's own files stay protected, even with --force.
    clean_error(inproc("export", str(run), "--format", "hub", "--out", str(run), "--force"),
                "run folder")
    # --force: replaced as asked; a new folder, or the named .onnx file itself, needs no --force.
    assert inproc("export", str(run), "--format", "hub", "--out", str(hub),
                  "--force").returncode == 0
    assert json.loads((hub / "config.json").read_text())["library"] == "unetkit"
    assert inproc("export", str(run), "--format", "hub", "--out",
                  str(tmp_path / "new")).returncode == 0
    assert inproc("export", str(run), "--format", "onnx", "--out", str(exo / "m.onnx"),
                  "--force").returncode == 0
    assert json.loads((exo / "m.json").read_text())["opset"]
    # What unetkit exported before is its own to replace: exporting again needs no --force.
    for fmt, target in (("onnx", exo / "m.onnx"), ("hub", hub)):
        assert inproc("export", str(run), "--format", fmt, "--out", str(target)).returncode == 0
    # int8: its sidecar is protected the same way, and the float model is never its output.
    (exo / "q.json").write_text("{}")
    with_onnx = tmp_path / "run-onnx"
    shutil.copytree(run, with_onnx)
    shutil.copy(exo / "m.onnx", with_onnx / "model.onnx")
    for target, word in ((exo / "q.onnx", "q.json"), (with_onnx / "model.onnx", "input")):
        clean_error(inproc("export", str(with_onnx), "--format", "int8", "--data",
                           str(tmp_path / "no-data"), "--out", str(target)), word)


# -- 3. a failed start leaves no run behind --------------------------------------------------------


def test_failed_start_leaves_no_run_and_the_corrected_command_trains(data, tmp_path):
    """A bad negatives folder used to leave R/config.yaml: the corrected command was refused
    ("already holds a run") and --resume failed again; an unknown encoder was a traceback, and
    an absolute negatives folder of non-images `ValueError: Can't mix absolute and relative`."""
    out = tmp_path / "run"
    rel = os.path.relpath(data)  # a relative data root beside an absolute negatives folder
    junk = tmp_path / "junk"
    junk.mkdir()
    for name in ("a.jpg", "b.png"):
        (junk / name).write_text("not an image")
    train = ("train", "--recipe", "demo", "--data", rel, "--out", str(out), "--quiet")
    clean_error(inproc(*train, "--set", *TRAIN, f"data.negatives=['{junk}']"),
                f"check-data {rel}", "b.png", "cannot read this image", lines=2)
    clean_error(inproc(*train, "--set", *TRAIN, "data.negatives=[no-such-folder]"),
                "no-such-folder")
    assert not out.exists() or not any(out.iterdir())
    # An unknown timm encoder: checked before any data is read (here there are none at all).
    for extra in ([], ["--folds", "2"]):
        clean_error(inproc("train", "--recipe", "demo", "--data", str(tmp_path / "no-data"),
                           "--out", str(out), *extra, "--set", *TRAIN, "model.arch=timm-unet",
                           "model.encoder=resnet9999"),
                    "model.encoder", "resnet9999", "list_models")
    assert not out.exists() or not any(out.iterdir())
    done = inproc(*train, "--set", *TRAIN)
    assert done.returncode == 0, done.stderr
    assert (out / "model.safetensors").exists() and (out / "config.yaml").exists()


# -- 4. tables: bounded, decoded, and consistent, read by one reader ----------------------------


def test_hostile_tables_are_one_line_errors_in_evaluate_and_train(run, data, tmp_path):
    """Random bytes (UnicodeDecodeError) and a 200,000-character field (_csv.Error) were
    tracebacks; a header without rows and a frame in two sequences were accepted silently."""
    for path, word in hostile_tables(tmp_path / "tables").values():
        proc = inproc("evaluate", str(run), "--data", str(data), "--sequences", str(path),
                      "--quiet")
        clean_error(proc, str(path), word)
        proc = inproc("train", "--recipe", "demo", "--data", str(data), "--out",
                      str(tmp_path / "run"), "--quiet", "--set", *TRAIN,
                      f"data.split.group_table={path}", "data.split.group_column=sequence")
        clean_error(proc, str(path), word)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    # A good table reads as before; the duplicate names every offending row.
    good = tmp_path / "good.csv"
    good.write_text("frame,sequence\n1.jpg,a\n2.jpg,a\n3.jpg,b\n")
    assert read_table(good, "sequence") == [("1.jpg", "a"), ("2.jpg", "a"), ("3.jpg", "b")]
    dup = tmp_path / "dup.csv"
    dup.write_text("frame,sequence\n1,a\n2,a\n1,b\n2,c\n")
    with pytest.raises(DataError, match=r"'1' \(rows 2, 4\).*'2' \(rows 3, 5\)"):
        read_table(dup, "sequence")


# -- 5. the operating point's range, on every verb ------------------------------------------------


def write_video(path: Path, frames: int = 3, size: int = 32) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.height = s.width = size
        s.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 40 * i, np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        c.mux(s.encode(None))
    return path


def test_operating_points_out_of_range_are_refused_by_every_verb(run, data, tmp_path):
    image = next((data / "images").iterdir())
    seq = tmp_path / "sequences.csv"
    seq.write_text("frame,sequence\n" + "".join(f"{p.name},a\n"
                                                for p in sorted((data / "images").iterdir())))
    out = str(tmp_path / "out")
    ev = ("evaluate", str(run), "--data", str(data), "--quiet")
    cases = [
        ((*ev, "--threshold", "2"), "--threshold"),
        ((*ev, "--threshold", "nan"), "--threshold"),
        ((*ev, "--min-area", "-1"), "--min-area"),
        ((*ev, "--sequences", str(seq), "--min-area", "1"), "--min-area"),
        ((*ev, "--sequences", str(seq), "--threshold", "2"), "--threshold"),
        (("predict", str(run), str(image), "--out", out, "--min-area", "2"), "--min-area"),
        (("predict", str(run), str(image), "--out", out, "--threshold", "0"), "--threshold"),
        (("report", str(run), "--data", str(data), "--out", out, "--threshold", "1"),
         "--threshold"),
        (("report", str(run), "--data", str(data), "--out", out, "--min-area", "inf"),
         "--min-area"),
        (("calibrate", str(run), "--data", str(data), "--max-false-alarm", "nan"),
         "--max-false-alarm"),
        (("calibrate", str(run), "--data", str(data), "--max-false-alarm", "1.5"),
         "--max-false-alarm"),
    ]
    for args, word in cases:
        clean_error(inproc(*args), word)
    assert not (tmp_path / "out").exists()
    # `evaluate --sequences --threshold` is used, not passed over.
    scores = tmp_path / "scores.json"
    assert inproc(*ev, "--sequences", str(seq), "--threshold", "0.3", "--json",
                  str(scores)).returncode == 0
    assert json.loads(scores.read_text())["settings"]["threshold"] == 0.3
    # A NaN threshold in a run folder's files: config.json, operating_point.json.
    for name, edit in (("config.json", lambda v: v["config"]["train"].update(threshold=math.nan)),
                       ("operating_point.json", lambda v: v.update(threshold=math.nan))):
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(run, bad)
        values = json.loads((run / name).read_text()) if (run / name).exists() else \
            {"threshold": 0.5, "min_area": 0.0}
        edit(values)
        (bad / name).write_text(json.dumps(values))
        for args in ((*ev[:1], str(bad), *ev[2:]),
                     ("predict", str(bad), str(image), "--out", out)):
            clean_error(inproc(*args), str(bad / name), "threshold")
    # --max-frames: a positive whole number of frames.
    video = write_video(tmp_path / "clip.mp4")
    for n in ("0", "-1"):
        clean_error(inproc("predict", str(run), str(video), "--out", out, "--max-frames", n,
                           "--quiet"), "--max-frames")
    assert not (tmp_path / "out").exists()
    assert inproc("predict", str(run), str(video), "--out", out, "--max-frames", "2",
                  "--quiet").returncode == 0


def test_cli_reproduction_in_a_subprocess(data, tmp_path):
    """The first reproduction of item 1 as a user runs it: the real command, its exit code."""
    proc = run_cli("train", "--recipe", "demo", "--data", str(data), "--out",
                   str(tmp_path / "r"), "--quiet", "--set", *TRAIN,
                   "data.split.group_table=typo.csv", "data.split.group_column=sequence",
                   check=False)
    clean_error(proc, "typo.csv")
