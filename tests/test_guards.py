"""The output guard, all-or-nothing results, special files and the messages of careless
commands, each as the user met them (tests/test_contracts_io.py runs every verb through the
same cases)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

import unetkit.core.files as files_mod
from conftest import run_cli
from contracts import RECIPE, TINY, TRAIN
from run_fixtures import make_run
from test_contracts_io import cli, fail_writes_from, one_line_error, snapshot
from unetkit.data.synthetic import write_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("guards") / "data", count=8, size=32)


@pytest.fixture
def runs(tmp_path) -> tuple[Path, Path]:
    return make_run(tmp_path / "run_a", TINY), make_run(tmp_path / "run_b", TINY, seed=1)


# -- 1. one output guard: inputs, input folders and every run folder -------------------------


def test_no_verb_replaces_a_file_of_the_run_it_reads_or_of_another_run(runs, data, tmp_path):
    run_a, run_b = runs
    (run_b / "curves.png").write_bytes(b"the curves of run_b")
    before = snapshot(run_a) | snapshot(run_b)
    images = data / "images"
    one_line_error(cli("predict", str(run_a), str(images), "--format", "coco", "--out",
                       str(run_a / "config.json")), "config.json", "run folder")
    one_line_error(cli("predict", str(run_a), str(images), "--format", "coco", "--out",
                       str(run_a / "ensemble.json")), "ensemble.json", "run folder")
    one_line_error(cli("evaluate", str(run_a), "--data", str(data), "--json",
                       str(run_b / "config.json")), "config.json", str(run_b))
    curves = tmp_path / "named" / "curves.png"  # an input named like a file of a run
    curves.parent.mkdir()
    shutil.copy(sorted(images.iterdir())[0], curves)
    one_line_error(cli("predict", str(run_a), str(curves), "--out", str(run_b)),
                   "curves.png", str(run_b))
    assert snapshot(run_a) | snapshot(run_b) == before
    assert not (run_a / "ensemble.json").exists()
    run_cli("predict", str(run_a), str(images), "--out", str(tmp_path / "masks"), "--quiet")


def test_no_verb_writes_inside_the_data_it_reads(runs, data, tmp_path):
    run_a, _ = runs
    before = snapshot(data)
    one_line_error(cli("report", str(run_a), "--data", str(data), "--out",
                       str(data / "images")), "inside the input folder")
    one_line_error(cli("report", str(run_a), "--data", str(data), "--out",
                       str(data / "masks")), "inside the input folder")
    one_line_error(cli("audit", str(data), "--folds", "2", "--folds-dir", str(data / "masks"),
                       "--out", str(tmp_path / "audit"), *RECIPE, *sets(TRAIN)),
                   "inside the input folder")
    assert snapshot(data) == before


def test_imported_masks_never_stand_beside_the_original_jpeg_masks(runs, data, tmp_path):
    run_a, _ = runs
    labels = tmp_path / "labels.json"
    run_cli("predict", str(run_a), str(data / "images"), "--format", "coco", "--out",
            str(labels), "--quiet")
    originals = tmp_path / "originals"  # the original masks as JPEG, in no known layout
    originals.mkdir()
    for mask in (data / "masks").iterdir():
        Image.open(mask).convert("L").save(originals / f"{mask.stem}.jpg")
    before = snapshot(originals)
    one_line_error(cli("import-labels", str(labels), "--images", str(data / "images"),
                       "--classes", "background,foreground", "--out", str(originals)),
                   "already exist")
    assert snapshot(originals) == before


def sets(values: list[str]) -> list[str]:
    return [a for v in values for a in ("--set", v)]


# -- 2. a result of several files is all or nothing -----------------------------------------


def test_audit_with_a_full_disk_keeps_every_file_of_the_earlier_audit(data, tmp_path,
                                                                      monkeypatch):
    """The disk used to fill up at audit.html after audit.csv and flagged.txt were replaced,
    and the message said "nothing was replaced"."""
    maps = tmp_path / "maps"
    maps.mkdir()
    for i, mask in enumerate(sorted((data / "masks").iterdir())):
        img = Image.open(mask) if i % 2 else Image.new("L", Image.open(mask).size)
        img.save(maps / f"{mask.stem}_prob.png")
    out = tmp_path / "audit"
    run_cli("audit", str(data), str(maps), "--out", str(out), "--quiet")
    before = snapshot(out)
    for mask in maps.iterdir():  # different maps: a different audit
        Image.new("L", Image.open(mask).size, 255).save(mask)
    calls = []
    real = files_mod._fill

    def fill(f, write, path):  # the page is the last file: the disk is full by then
        calls.append(path.name)
        if path.name == "audit.html":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(f, write, path)

    monkeypatch.setattr(files_mod, "_fill", fill)
    err = one_line_error(cli("audit", str(data), str(maps), "--out", str(out)),
                         "No space left on device", "nothing was replaced")
    assert {"audit.csv", "flagged.txt"} <= set(calls), "the page is not the first file written"
    assert snapshot(out) == before, err
    assert not list(out.rglob("*.unetkit-tmp"))


def test_report_with_a_full_disk_replaces_none_of_its_files(runs, data, tmp_path, monkeypatch):
    run_a, _ = runs
    out = tmp_path / "report"
    run_cli("report", str(run_a), "--data", str(data), "--out", str(out), "--quiet")
    before = snapshot(out)
    fail_writes_from(monkeypatch, 3, errno.ENOSPC)  # the third file of the report
    one_line_error(cli("report", str(run_a), "--data", str(data), "--out", str(out)),
                   "No space left on device")
    assert snapshot(out) == before


# -- 3. special files are refused, never opened ---------------------------------------------


@pytest.mark.parametrize("verb", ["score", "audit"])
def test_a_fifo_among_the_maps_is_refused_instead_of_hanging(verb, data, tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    for mask in (data / "masks").iterdir():
        shutil.copy(mask, maps / f"{mask.stem}_prob.png")
    fifo = sorted(maps.iterdir())[0]
    fifo.unlink()
    os.mkfifo(fifo)
    args = (["score", str(maps), "--masks", str(data / "masks"), "--suffix", "_prob"]
            if verb == "score" else ["audit", str(data), str(maps), "--out",
                                     str(tmp_path / "audit")])
    err = cli(*args).stderr
    assert fifo.name in err and "FIFO" in err and "Traceback" not in err, err


# -- 5. audit without the curation extra ----------------------------------------------------


def test_audit_without_the_curation_extra_names_the_install(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imagehash", None)  # as if it were not installed
    one_line_error(cli("audit", str(data), str(data / "masks"), "--out", str(tmp_path / "a")),
                   "pip install 'unetkit[curation]'")


# -- 6. unclear or unchecked ----------------------------------------------------------------


def test_out_naming_an_existing_file_says_so_with_the_fix(runs, data, tmp_path):
    run_a, _ = runs
    taken = tmp_path / "report.md"
    taken.write_text("my notes")
    maps = tmp_path / "maps"  # any 0/255 maps will do: the output is checked first
    shutil.copytree(data / "masks", maps)
    for args in (["report", str(run_a), "--data", str(data), "--out", str(taken)],
                 ["predict", str(run_a), str(data / "images"), "--out", str(taken)],
                 ["audit", str(data), str(data / "masks"), "--out", str(taken)],
                 ["score", str(maps), "--masks", str(data / "masks"), "--out", str(taken)],
                 ["train", *RECIPE, "--data", str(data), "--out", str(taken)]):
        err = one_line_error(cli(*args), str(taken), "not a folder", "choose another --out")
        assert "Errno" not in err, err
    assert taken.read_text() == "my notes"


@pytest.mark.parametrize("option,value", [("--top", "-3"), ("--hash-distance", "1000"),
                                          ("--hash-distance", "-1")])
def test_audit_options_out_of_range_are_refused(option, value, data, tmp_path):
    out = tmp_path / "audit"
    one_line_error(cli("audit", str(data), str(data / "masks"), "--out", str(out), option,
                       value), option, value)
    assert not out.exists()


def test_a_hub_encoder_without_a_network_names_model_encoder(data, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network
    err = one_line_error(cli("train", *RECIPE, "--data", str(data), *sets(TRAIN), "--set",
                             "model.arch=timm-unet", "--set",
                             "model.encoder=hf-hub:nobody/no-such-encoder", "--out",
                             str(tmp_path / "run")), "model.encoder=hf-hub:nobody/no-such-encoder")
    assert "--set model.encoder=" in err


def test_out_of_memory_names_the_file_being_read(runs, data, tmp_path, monkeypatch):
    from unetkit.inference.predictor import Predictor

    run_a, _ = runs

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(Predictor, "probabilities", no_memory)
    err = one_line_error(cli("predict", str(run_a), str(data / "images"), "--out",
                             str(tmp_path / "masks")), "out of memory")
    assert "synth_00" in err, err  # the image read last


# -- issue: a run folder is never repurposed -------------------------------------------------


def test_folds_never_turn_a_trained_run_into_an_ensemble(runs, data, tmp_path):
    run_a, _ = runs
    before = snapshot(run_a)
    one_line_error(cli("train", *RECIPE, "--data", str(data), *sets(TRAIN), "--folds", "2",
                       "--out", str(run_a)), str(run_a), "another run")
    one_line_error(cli("audit", str(data), "--folds", "2", "--folds-dir", str(run_a), "--out",
                       str(tmp_path / "audit"), *RECIPE, *sets(TRAIN)), "another run")
    assert snapshot(run_a) == before
    assert sorted(p.name for p in run_a.iterdir()) == sorted(Path(p).name for p in before)
    err = one_line_error(cli("audit", str(data), str(run_a), "--folds", "2", "--out",
                             str(tmp_path / "audit"), *RECIPE, *sets(TRAIN)), str(run_a),
                         "--folds 2")
    assert "not both" in err
    assert not (tmp_path / "audit").exists()
    assert json.loads((run_a / "config.json").read_text())  # the run still loads
