"""Greyscale end to end on real data: the isbi-greyscale recipe on ISBI 2012 EM slices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import real_data, run_cli
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
    # Cell interior covers 78% of the pixels, so predicting "cell" everywhere already scores
    # mDice 0.888 on these 6 slices (seen in the first epochs). 0.905 needs the membranes found;
    # this setting reaches 0.93.
    assert scores["mDice_point"] > 0.905, scores
    assert scores["mIoU_point"] > 0.83, scores
    out = tmp_path / "pred"
    run_cli("predict", str(run), str(data / "image" / "0.png"), "--out", str(out), "--tta",
            "--quiet")
    mask = np.asarray(Image.open(out / "0.png"))
    assert mask.shape == (512, 512) and set(np.unique(mask)) <= {0, 255}
    summary = json.loads((out / "summary.json").read_text())[0]
    assert summary["classes"]["cell"]["components"] > 10  # many cells, split by membranes
