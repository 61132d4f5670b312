"""End to end: the real `unetkit` command in a subprocess, on tiny synthetic data.

One small run (2 epochs) is trained once for the module; evaluate, predict and resume use it.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import run_cli
from unetkit import UNet, load_model
from unetkit.core.version import __version__
from unetkit.io.plots import TILE

SMALL = ["--set", "data.image_size=[32,32]", "--set", "model.base_channels=8",
         "--set", "model.depth=2", "--set", "train.batch_size=8", "--set", "train.samples=2",
         "--quiet"]


@pytest.fixture(scope="module")
def run(synthetic_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli("train", "--recipe", "demo", "--data", str(synthetic_data), "--out", str(out),
                   "--set", "train.epochs=2", *SMALL)
    assert "epoch   2/2" in proc.stdout
    return out


def test_version_and_recipes():
    proc = run_cli("--version", process=True)  # the real entry point
    assert proc.stdout.strip() == f"unetkit {__version__}"
    proc = run_cli("recipes")
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert "kvasir-binary" in names and "demo" in names


@pytest.mark.slow
def test_run_folder_is_complete(run):
    for name in ("config.yaml", "config.json", "model.safetensors", "checkpoints/last.pt",
                 "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    samples = sorted((run / "samples").glob("*.png"))
    assert len(samples) == 2
    # image | truth | prediction side by side: three TILE-px tiles (the images are square),
    # 6 px apart, under their captions; the truth tile is the image with the lesion drawn on it
    panel = np.asarray(Image.open(samples[0]).convert("RGB")).astype(int)
    assert panel.shape[1] == 3 * TILE + 2 * 6 and panel.shape[0] > TILE
    image, truth = (panel[-TILE - 2:-2, x:x + TILE] for x in (0, TILE + 6))
    changed = np.abs(truth - image).sum(-1) > 30
    assert 0.01 < changed.mean() < 0.9, changed.mean()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["val_mDice_point"]) <= 1 and float(r["train_loss"]) > 0 for r in rows)

    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and {"model", "optimizer", "scheduler", "rng"} <= set(state)
    card = json.loads((run / "config.json").read_text())
    assert card["classes"] == ["background", "lesion"] and card["image_size"] == [32, 32]
    assert card["mean"] == [0.0, 0.0, 0.0] and card["std"] == [1.0, 1.0, 1.0]
    # The weights load into a plain UNet with the standard calls, and load_model rebuilds it.
    model = UNet(3, 1, base_channels=8, depth=2)
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    rebuilt = load_model(run)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), rebuilt(x))


@pytest.mark.slow
def test_evaluate_json(run, synthetic_data, tmp_path):
    out = tmp_path / "scores.json"
    proc = run_cli("evaluate", str(run), "--data", str(synthetic_data), "--json", str(out),
                   "--quiet")
    assert "mDice" in proc.stdout
    scores = json.loads(out.read_text())
    for key in ("mDice", "mIoU", "mDice_point", "mIoU_point", "dice", "iou", "precision",
                "recall"):
        assert 0.0 <= scores[key] <= 1.0, key
    # --split val is the run's own validation split: 48 images, val_fraction 0.2 (demo recipe)
    assert scores["images"] == 10 and scores["split"] == "val"


@pytest.mark.slow
def test_predict_at_each_inputs_size(run, synthetic_data, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = sorted((synthetic_data / "images").glob("*.jpg"))
    sizes = {"wide": (90, 40), "tall": (33, 71), "same": (64, 64)}  # (width, height)
    for (name, size), path in zip(sizes.items(), src, strict=False):
        Image.open(path).resize(size).save(inputs / f"{name}.png")
    (inputs / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "out"
    proc = run_cli("predict", str(run), str(inputs / "wide.png"), str(inputs / "tall.png"),
                   str(inputs / "same.png"), str(inputs / "broken.jpg"), "--out", str(out),
                   "--overlay", "--quiet", check=False)
    assert proc.returncode == 1  # the unreadable file is reported, the others still predicted
    assert "broken.jpg" in proc.stderr and "wrote 3 masks" in proc.stdout
    for name, size in sizes.items():
        mask = Image.open(out / f"{name}.png")
        assert mask.size == size
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
        assert Image.open(out / f"{name}_overlay.png").size == size


@pytest.mark.slow
def test_resume_continues_and_refuses_overwrite(run, synthetic_data, tmp_path):
    proc = run_cli("train", "--recipe", "demo", "--data", str(synthetic_data), "--out", str(run),
                   *SMALL, check=False)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert "--resume" in proc.stderr

    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    proc = run_cli("train", "--resume", str(resumed), "--set", "train.epochs=3", "--quiet")
    assert "resuming" in proc.stdout and "after epoch 2" in proc.stdout
    assert "epoch   3/3" in proc.stdout and "epoch   1/" not in proc.stdout
    rows = list(csv.DictReader((resumed / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 3

    proc = run_cli("train", "--resume", str(resumed), "--set", "train.epochs=4",
                   "--set", "train.monitor=dice", "--quiet", check=False)
    assert proc.returncode == 2 and "by val mDice_point" in proc.stderr, proc.stderr
    assert "train.monitor=mDice_point" in proc.stderr
    assert len(list(csv.DictReader((resumed / "metrics.csv").open()))) == 3  # left as it was

    proc = run_cli("train", "--resume", str(tmp_path / "nothing"), "--quiet", check=False)
    assert proc.returncode == 2 and "nothing" in proc.stderr
