"""Greyscale end to end on real data: the isbi-greyscale recipe on ISBI 2012 EM slices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import real_data, run_cli
from unetkit import config as config_mod
from unetkit.data.splits import resolve_split
from unetkit.models.unet import UNet


def test_depth_one_greyscale_unet():
    model = UNet(in_channels=1, num_classes=1, base_channels=4, depth=1).eval()
    assert len(model.downs) == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 13, 22)).shape == (2, 1, 13, 22)


@pytest.mark.slow
def test_isbi_greyscale_recipe_trains_evaluates_and_predicts(tmp_path):
    data = real_data("isbi2012-em")
    run = tmp_path / "run"
    # The recipe with a narrower, shallower U-Net and 12 epochs: ~2 minutes on 2 CPU cores.
    run_cli("train", "--recipe", "isbi-greyscale", "--data", str(data), "--out", str(run),
            "--quiet", "--set", "model.base_channels=8", "--set", "model.depth=3",
            "--set", "train.epochs=12", "--set", "train.lr=3e-3", "--set", "train.samples=0")
    card = json.loads((run / "config.json").read_text())
    assert card["in_channels"] == 1 and card["mean"] == [0.0] and card["classes"][1] == "cell"
    scores_file = tmp_path / "val.json"
    run_cli("evaluate", str(run), "--data", str(data), "--split", "val", "--json", str(scores_file))
    scores = json.loads(scores_file.read_text())
    assert scores["images"] == 6  # 20% of 30 slices, seed 42
    cfg = config_mod.load(file=str(run / "config.yaml"))
    val = resolve_split(cfg, data, "val")
    truths = {item.name: np.asarray(Image.open(item.mask)) > 127 for item in val}
    # Cell interior covers 78% of the pixels, so predicting "cell" everywhere already scores
    # about 0.89 on these slices, computed here: the floor stands 0.015 above it (mDice@point
    # measured 0.93). The literature's mDice (0.78 here) is no test of this: it averages the
    # thresholds up to 255/255, where a map this sure of the membranes marks little of the
    # dense foreground, while a constant map of "cell" scores 0.89 at every threshold.
    trivial = float(np.mean([dice(np.ones_like(t), t) for t in truths.values()]))
    assert 0.85 < trivial < 0.92, trivial
    assert scores["mDice_point"] > trivial + 0.015, (scores, trivial)
    # predict on a held-out slice, scored against its truth: above all-cell on that slice
    stem = sorted(truths)[0]
    out = tmp_path / "pred"
    run_cli("predict", str(run), str(data / "image" / f"{stem}.png"), "--out", str(out), "--tta",
            "--quiet")
    mask = np.asarray(Image.open(out / f"{stem}.png"))
    assert mask.shape == (512, 512) and set(np.unique(mask)) <= {0, 255}
    truth = truths[stem]
    assert dice(mask > 0, truth) > dice(np.ones_like(truth), truth) + 0.015
    summary = json.loads((out / "summary.json").read_text())[0]
    assert summary["classes"]["cell"]["components"] > 10  # many cells, split by membranes


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))
