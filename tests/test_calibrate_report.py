"""End to end on tiny synthetic data: train with negative frames, evaluate frame by frame,
calibrate, then check that predict and evaluate use the recorded point and that `report`
writes its page, pictures and per-image table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

SMALL = ["data.image_size=[32,32]", "model.base_channels=8", "model.depth=2",
         "train.batch_size=8", "train.samples=1", "train.epochs=2"]


@pytest.fixture(scope="module")
def run(synthetic_data, tmp_path_factory):
    """A run trained with 20 plain grey frames as negatives (a quarter of each batch)."""
    base = tmp_path_factory.mktemp("neg")
    neg = base / "free" / "images"
    neg.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(100, 140, (48, 48, 3), dtype=np.uint8)).save(neg / f"{i}.jpg")
    out = base / "run"
    run_cli("train", "--recipe", "demo", "--data", str(synthetic_data), "--out", str(out),
            "--set", *SMALL, f"data.negatives=[{neg}]", "data.negative_fraction=0.25", "--quiet")
    return out, neg


@pytest.mark.slow
def test_evaluate_calibrate_predict_and_report(run, synthetic_data, tmp_path):
    out, neg = run
    # The run's 4 validation negatives join its val split; --negatives adds a folder.
    run_cli("evaluate", str(out), "--data", str(synthetic_data), "--json",
            str(tmp_path / "before.json"), "--quiet")
    before = json.loads((tmp_path / "before.json").read_text())
    assert before["frames_negative"] == 4 and before["frames_positive"] == before["images"]
    assert before["operating_point"] == "default" and before["threshold"] == 0.5
    for key in ("sensitivity", "false_alarm_rate", "auroc", "mDice", "mDice_point"):
        assert before[key] is not None and 0 <= before[key] <= 1

    proc = run_cli("calibrate", str(out), "--data", str(synthetic_data), "--negatives", str(neg),
                   "--max-false-alarm", "0.05", "--quiet")
    assert "recorded in" in proc.stdout
    point = json.loads((out / "operating_point.json").read_text())
    # The run's 4 validation negatives are in the folder too: each frame counts once.
    assert point["frames_negative"] == 20 and point["after"]["false_alarm_rate"] <= 0.05
    assert point["before"]["threshold"] == 0.5 and point["before"]["min_area"] == 0.0

    run_cli("evaluate", str(out), "--data", str(synthetic_data), "--negatives", str(neg),
            "--json", str(tmp_path / "after.json"), "--quiet")
    after = json.loads((tmp_path / "after.json").read_text())
    assert after["operating_point"] == "calibrated"
    assert (after["threshold"], after["min_area"]) == (point["threshold"], point["min_area"])
    # Calibrated on these very frames, so evaluate must reproduce the calibration's numbers.
    assert after["false_alarm_rate"] == pytest.approx(point["after"]["false_alarm_rate"])
    assert after["sensitivity"] == pytest.approx(point["after"]["sensitivity"])
    assert after["mDice_point"] == pytest.approx(point["after"]["mDice_point"], abs=1e-6)

    run_cli("predict", str(out), str(neg), "--out", str(tmp_path / "masks"), "--quiet")
    flagged = sum(np.asarray(Image.open(p)).any() for p in (tmp_path / "masks").glob("*.png"))
    assert flagged <= round(0.05 * 20)  # at most the calibrated share of these frames is marked
    run_cli("predict", str(out), str(neg), "--out", str(tmp_path / "raw"), "--threshold", "0.01",
            "--min-area", "0", "--quiet")
    assert sum(np.asarray(Image.open(p)).any() for p in (tmp_path / "raw").glob("*.png")) > flagged

    rep = tmp_path / "report"
    run_cli("report", str(out), "--data", f"{synthetic_data}:val", "--negatives", str(neg),
            "--out", str(rep), "--quiet")
    md = (rep / "report.md").read_text()
    assert f"| {synthetic_data.name}:val |" in md and "| free |" in md
    assert "<table>" in (rep / "report.html").read_text()
    for name in ("dice_histograms.png", "reliability.png"):
        picture = np.asarray(Image.open(rep / name).convert("RGB"))
        assert min(picture.shape[:2]) > 100, name
        # something is drawn: not one flat colour, and more than the axes' black and white
        assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 20, name
    with (rep / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == before["frames_positive"] + before["frames_negative"] + 20
    assert {r["set"] for r in rows} == {f"{synthetic_data.name}:val", "free"}


@pytest.mark.slow
def test_calibrate_refuses_bad_input_with_exit_code_2(run, synthetic_data, tmp_path):
    out, _ = run
    proc = run_cli("calibrate", str(out), "--data", str(synthetic_data), "--split", "all",
                   "--max-false-alarm", "1.5", "--quiet", check=False)
    assert proc.returncode == 2 and "--max-false-alarm must be in [0, 1)" in proc.stderr
    proc = run_cli("calibrate", str(out), "--data", str(synthetic_data), "--split", "all",
                   "--max-false-alarm", "0.05", "--quiet", check=False)  # no negatives in "all"
    assert proc.returncode == 2 and "no frame without foreground" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("report", str(out), "--out", str(tmp_path / "r"), "--quiet", check=False)
    assert proc.returncode == 2 and "--data" in proc.stderr
