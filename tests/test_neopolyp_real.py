"""NeoPolyp end to end on real data (CPU, subsampled): train the 3-class recipe, evaluate with
per-class scores, and check them against what trivial predictions score."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from conftest import real_data, run_cli
from unetkit.images import MaskDecoder, read_mask, resize_mask

COLORS = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]


def trivial_dice(masks: list[np.ndarray]) -> dict[int, float]:
    """Data-set Dice of class k when every pixel is predicted as k (the best constant answer for
    that class; all-background scores 0 for both polyp classes). Key "polyp": both classes as one."""
    counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=3)
    out = {k: 2 * counts[k] / (counts[k] + counts.sum()) for k in (1, 2)}
    out["polyp"] = 2 * counts[1:].sum() / (counts[1:].sum() + counts.sum())
    return out


@pytest.mark.slow
def test_neopolyp_unet3_learns_both_polyp_classes(tmp_path):
    root = real_data("bkai-igh-neopolyp")
    stems = sorted(p.stem for p in (root / "train").glob("*.jpeg"))
    random.Random(0).shuffle(stems)
    (tmp_path / "train.txt").write_text("\n".join(stems[:150]))
    (tmp_path / "val.txt").write_text("\n".join(stems[150:200]))
    run = tmp_path / "run"
    run_cli("train", "--recipe", "neopolyp-unet3", "--data", str(root), "--out", str(run), "--quiet",
            "--set", f"data.split.train={tmp_path / 'train.txt'}",
            "--set", f"data.split.val={tmp_path / 'val.txt'}",
            "--set", "data.image_size=[96, 96]", "--set", "model.base_channels=16",
            "--set", "model.depth=3", "--set", "model.head_channels=8",
            "--set", "train.epochs=10", "--set", "train.lr=3e-3", "--set", "train.samples=0")
    card = json.loads((run / "config.json").read_text())
    assert card["classes"] == ["background", "neoplastic", "non_neoplastic"]
    assert card["mask_encoding"] == "color" and card["class_colors"] == COLORS

    out = tmp_path / "val.json"
    run_cli("evaluate", str(run), "--data", str(root), "--split", "val", "--json", str(out), "--quiet")
    scores = json.loads(out.read_text())
    pc = scores["per_class"]
    print(json.dumps({k: {m: round(v[m], 4) for m in ("dice", "iou", "mDice")} for k, v in pc.items()}))
    assert np.asarray(scores["confusion_matrix"]).sum() == sum(v["pixels"] for v in pc.values())

    decoder = MaskDecoder("color", 3, colors=COLORS)
    masks = [read_mask(root / "train_gt" / f"{s}.jpeg", decoder) for s in stems[150:200]]
    floor = trivial_dice(masks)
    print("trivial", floor)
    # Measured (96 px, 150 images, 10 epochs): neoplastic Dice 0.44 against a trivial 0.09.
    assert pc["neoplastic"]["dice"] > floor[1] + 0.2
    # Polyp against background, whichever polyp class: from the confusion matrix.
    cm = np.asarray(scores["confusion_matrix"], dtype=np.float64)
    tp = cm[1:, 1:].sum()
    polyp_dice = 2 * tp / (2 * tp + cm[0, 1:].sum() + cm[1:, 0].sum())
    assert polyp_dice > floor["polyp"] + 0.25
    # The rare non-neoplastic class (0.5 % of pixels) is not learnt at this size and length
    # (Dice 0.0 measured); it is only checked to be reported.
    assert 0.0 <= pc["non_neoplastic"]["dice"] <= 1.0
