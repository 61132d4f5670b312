"""Competition submissions: the run-length code, and a bkai-neopolyp CSV decoded back."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from unetkit import config
from unetkit.data.preprocess import resolve_normalisation
from unetkit.deploy.submit import FORMATS, rle_decode, rle_encode
from unetkit.inference.predictor import Predictor
from unetkit.models.unet import build_model
from unetkit.runs.folder import save_weights, write_model_card


def test_rle_known_values():
    mask = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1]])
    assert rle_encode(mask) == "2 3 9 1"  # row-major, 1-indexed: pixels 2,3,4 and 9
    assert rle_encode(np.zeros((4, 5))) == ""
    assert rle_encode(np.ones((2, 3))) == "1 6"
    assert (rle_decode("2 3 9 1", (3, 3)) == mask).all()
    assert rle_decode("", (2, 2)).sum() == 0


def test_rle_round_trip_on_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (64, 48)]:
        for density in (0.02, 0.5, 0.98):
            mask = rng.random(shape) < density
            assert (rle_decode(rle_encode(mask), shape) == mask).all()


def test_rle_decode_rejects_bad_codes():
    with pytest.raises(ValueError, match="odd number"):
        rle_decode("1 2 3", (2, 2))
    with pytest.raises(ValueError, match="outside"):
        rle_decode("3 5", (2, 2))


def make_run(run_dir, classes=("background", "neoplastic", "non_neoplastic")):
    """An untrained but complete run folder: enough for predict/submit, no training needed."""
    cfg = config.from_dict({
        "model": {"base_channels": 4, "depth": 2},
        "data": {"classes": list(classes), "image_size": [32, 32],
                 **({"mask_encoding": "color",
                     "class_colors": [[0, 0, 0], [255, 0, 0], [0, 255, 0]]}
                    if len(classes) == 3 else {})}})
    model = build_model(cfg)
    torch.manual_seed(0)
    for p in model.parameters():  # large random weights: every class gets predicted somewhere
        if p.ndim > 1:
            torch.nn.init.normal_(p, std=0.5)
    resolve_normalisation(cfg, model)
    save_weights(model, run_dir / "model.safetensors")
    write_model_card(run_dir, cfg)
    return cfg


def test_bkai_neopolyp_csv_decodes_back_to_the_predicted_masks(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    test_dir = tmp_path / "data" / "test"
    test_dir.mkdir(parents=True)
    rng = np.random.default_rng(1)
    sizes = {"a1": (40, 56), "b2": (33, 29), "c3": (48, 48)}  # each image at its own size
    for stem, (h, w) in sizes.items():
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(test_dir / f"{stem}.jpeg")
    out = tmp_path / "sub" / "submission.csv"
    proc = run_cli("submit", str(run), "--data", str(tmp_path / "data"), "--format",
                   "bkai-neopolyp", "--out", str(out), "--quiet")
    assert "6 rows for 3 images" in proc.stdout

    with out.open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Id", "Expected"]
    table = dict(rows[1:])
    assert sorted(table) == ["a1_0", "a1_1", "b2_0", "b2_1", "c3_0", "c3_1"]

    pred_dir = tmp_path / "pred"
    run_cli("predict", str(run), str(test_dir), "--out", str(pred_dir), "--quiet")
    predictor = Predictor.from_run(run, "cpu")
    classes_seen = set()
    for stem, shape in sizes.items():
        image = np.asarray(Image.open(test_dir / f"{stem}.jpeg").convert("RGB"))
        labels = predictor.predict([image])[0]
        assert labels.shape == shape
        classes_seen |= set(np.unique(labels).tolist())
        assert (rle_decode(table[f"{stem}_0"], shape) == (labels == 1)).all()
        assert (rle_decode(table[f"{stem}_1"], shape) == (labels == 2)).all()
        # predict writes the same masks, as indices and in the palette colours
        assert (np.asarray(Image.open(pred_dir / f"{stem}.png")) == labels).all()
        colours = np.asarray(Image.open(pred_dir / f"{stem}_color.png").convert("RGB"))
        assert (colours == np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]])[labels]).all()
    assert {1, 2} <= classes_seen  # the check compared non-empty masks of both classes


def test_submit_errors_name_the_fix(tmp_path):
    run = tmp_path / "run"
    make_run(run, classes=("background", "polyp"))
    proc = run_cli("submit", str(run), "--data", str(tmp_path), "--format", "bkai-neopolyp",
                   "--out", str(tmp_path / "x.csv"), check=False)
    assert proc.returncode == 2 and "needs 3" in proc.stderr
    proc = run_cli("submit", str(run), "--data", str(tmp_path), "--format", "kaggle-x",
                   "--out", str(tmp_path / "x.csv"), check=False)
    assert proc.returncode == 2 and "--format: invalid choice: 'kaggle-x'" in proc.stderr
    assert all(f"'{name}'" in proc.stderr for name in FORMATS)  # every format it knows
