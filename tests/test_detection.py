"""Frame-level detection scores, worked by hand; the calibration search on a synthetic case with
a known best point; the operating point as prediction, evaluation and export use it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unetkit import config as config_mod
from unetkit.clinical.calibrate import (
    AREAS,
    THRESHOLDS,
    CalibrationError,
    FrameCounts,
    grid,
    search,
)
from unetkit.evaluation.frames import frame_row
from unetkit.inference.detection import (
    OperatingPoint,
    auroc,
    frame_score,
    frame_summary,
    is_detected,
    labels_at,
    read_operating_point,
    write_operating_point,
)
from unetkit.inference.predictor import Predictor
from unetkit.models.unet import build_model
from unetkit.runs.folder import RunError, save_weights, write_model_card


def test_is_detected_counts_foreground_area_against_min_area():
    labels = np.zeros((10, 10), np.uint8)
    assert not is_detected(labels, 0.0)  # empty prediction: never flagged
    labels[0, :3] = 2  # 3 % of the frame, class 2 counts as foreground too
    assert is_detected(labels, 0.0) and is_detected(labels, 0.029)
    assert not is_detected(labels, 0.03)  # "more than" min_area


def test_frame_score_is_the_probability_the_top_share_exceeds():
    p = np.zeros((20, 20), np.float32)  # 400 pixels; 0.5 % -> the top 2 pixels
    p[0, 0], p[0, 1], p[0, 2] = 0.9, 0.7, 0.6
    assert frame_score(p) == pytest.approx(0.7)
    assert frame_score(torch.from_numpy(p)[None]) == pytest.approx(0.7)  # (1, H, W) sigmoid
    soft = np.stack([1 - p, p * 0.5, p * 0.5])  # (3, H, W) softmax: foreground = 1 - background
    assert frame_score(soft) == pytest.approx(0.7)
    assert frame_score(np.zeros((4, 4))) == 0.0


def test_frame_score_of_a_video_frame_is_exactly_the_sorted_value():
    """Large maps take a shortcut (a bound read off every 16th pixel); it must give the same
    value as sorting, also when the sampled pixels miss the top ones or all values tie."""
    rng = np.random.default_rng(0)
    h, w = 576, 720
    k = int(np.ceil(0.005 * h * w))
    noise = rng.random((h, w), dtype=np.float32) ** 8
    off_grid = np.zeros((h, w), np.float32)
    off_grid.ravel()[1::16][:5000] = 0.9  # the sample (every 16th from 0) sees none of these
    on_grid = np.full((h, w), 0.1, np.float32)
    on_grid.ravel()[::16][:300] = 1.0  # the sample sees only these: fewer than k reach its bound
    polyp = noise * 0.3
    polyp[200:300, 300:420] = 0.6 + 0.4 * rng.random((100, 120), dtype=np.float32)
    for case in (noise, off_grid, on_grid, polyp, np.full((h, w), 0.25, np.float32)):
        assert frame_score(case) == np.sort(case.ravel())[-k]


def test_labels_at_thresholds_then_empties_small_frames():
    p = np.zeros((1, 10, 10), np.float32)
    p[0, :2, :2] = 0.8  # 4 % of the frame
    assert labels_at(p, 0.5).sum() == 4
    assert labels_at(p, 0.5, min_area=0.04).sum() == 0
    assert labels_at(p, 0.85).sum() == 0
    three = np.zeros((3, 10, 10), np.float32)
    three[0] = 1.0
    three[:, 0, 0] = [0.2, 0.3, 0.5]  # foreground 0.8: class 2, the likelier foreground class
    three[:, 0, 1] = [0.4, 0.35, 0.25]  # foreground 0.6: class 1 (argmax alone would say 0)
    assert labels_at(three, 0.5)[0, :3].tolist() == [2, 1, 0]


def test_auroc_by_hand_with_ties_and_missing_kinds():
    assert auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert auroc([0.1], [0.9]) == 0.0
    # pairs (pos, neg): (0.5,0.5) tie=0.5, (0.5,0.2)=1, (0.9,0.5)=1, (0.9,0.2)=1 -> 3.5 / 4
    assert auroc([0.5, 0.9], [0.5, 0.2]) == pytest.approx(0.875)
    assert auroc([0.5], []) is None


def test_frame_rows_and_summary_with_empty_truth_and_empty_prediction():
    empty, spot = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    spot[:3, :3] = 1
    probs = lambda lab: torch.from_numpy(lab.astype(np.float32))[None]  # noqa: E731
    rows = [
        frame_row("tn", empty, empty, probs(empty), 2, 0.0),  # no polyp, silent
        frame_row("fp", empty, spot, probs(spot), 2, 0.0),  # no polyp, flagged
        frame_row("fn", spot, empty, probs(empty), 2, 0.0),  # polyp, missed
        frame_row("tp", spot, spot, probs(spot), 2, 0.0),  # polyp, found exactly
        frame_row("small", spot, spot, probs(spot), 2, 0.09),  # found, but 9 % is not > 9 %
    ]
    assert [r["positive"] for r in rows] == [False, False, True, True, True]
    assert [r["detected"] for r in rows] == [False, True, False, True, False]
    assert [r["dice"] for r in rows] == [1.0, 0.0, 0.0, 1.0, 1.0]
    s = frame_summary(rows)
    assert s["sensitivity"] == pytest.approx(1 / 3) and s["false_alarm_rate"] == 0.5
    # scores: tn 0, fp 1 | fn 0, tp 1, small 1. Pairs (positive, negative): fn-tn tie 0.5,
    # fn-fp 0, tp-tn 1, tp-fp tie 0.5, small-tn 1, small-fp tie 0.5 -> 3.5 / 6
    assert [r["score"] for r in rows] == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert s["auroc"] == pytest.approx(3.5 / 6)
    assert frame_summary(rows[:2])["sensitivity"] is None


def test_frame_counts_match_direct_thresholding():
    rng = np.random.default_rng(0)
    probs = rng.random((1, 30, 40)).astype(np.float32)
    truth = (rng.random((30, 40)) > 0.6).astype(np.uint8)
    dice, area = FrameCounts.from_probs(probs, truth, 2).at()
    for i in (0, 24, 49, 77, 98):
        pred = probs[0] > THRESHOLDS[i]
        tp = (pred & (truth == 1)).sum()
        expected = 2 * tp / (pred.sum() + truth.sum())
        assert dice[i] == pytest.approx(expected) and area[i] == pytest.approx(pred.mean())


def synthetic_frames(blob: float = 0.04, blob_prob: float = 0.95):
    """Four positive frames: a 10 % polyp at probability 0.9 and a 1 % speck at 0.605 (a false
    positive that costs Dice while it is kept). Five negative frames: four with a 1.8 % speck at
    0.705, one with a `blob` share at `blob_prob`."""
    frames = []
    for _ in range(4):
        p, t = np.full((1, 50, 50), 0.05, np.float32), np.zeros((50, 50), np.uint8)
        p[0, :25, :10], t[:25, :10] = 0.9, 1
        p[0, 40:45, 45:50] = 0.605
        frames.append(FrameCounts.from_probs(p, t, 2))
    for k in range(5):
        p = np.full((1, 50, 50), 0.05, np.float32)
        if k == 0:
            p[0].flat[: round(blob * 2500)] = blob_prob
        else:
            p[0, :5, :9] = 0.705
        frames.append(FrameCounts.from_probs(p, np.zeros((50, 50), np.uint8), 2))
    return frames


def test_calibration_search_finds_the_known_best_point():
    """Every point keeps all polyps (10 % of the frame at 0.9) up to threshold 0.89 and min_area
    0.1. Dice is 1 only above 0.605 (the speck gone), so the lowest such threshold is 0.61; there
    the 1.8 % specks of four negative frames are flagged unless min_area >= 0.02 (the grid's
    next step above 0.015). With <= 20 % false alarms the 4 % blob may stay: (0.61, 0.02). With
    none, min_area must exceed the blob's 4 %: (0.61, 0.05)."""
    frames = synthetic_frames()
    point, g = search(frames, max_false_alarm=0.2)
    assert point == OperatingPoint(0.61, 0.02)
    i, j = 60, list(AREAS).index(0.02)
    assert g["sensitivity"][i, j] == 1.0 and g["false_alarm_rate"][i, j] == pytest.approx(0.2)
    assert g["mDice_point"][i, j] == pytest.approx(1.0)
    assert g["mDice_point"][59, j] < 1.0 and g["false_alarm_rate"][i, j - 1] == 1.0
    assert search(frames, max_false_alarm=0.0)[0] == OperatingPoint(0.61, 0.05)
    # A negative frame half covered at 0.999: no threshold or min_area on the grid silences it.
    with pytest.raises(CalibrationError, match="lowest reachable is 20.0%"):
        search(synthetic_frames(blob=0.5, blob_prob=0.999), max_false_alarm=0.1)
    with pytest.raises(CalibrationError, match="no frame without foreground"):
        search(frames[:4], 0.1)
    assert grid(frames)["sensitivity"].min() == 0.0  # at 0.9 and above nothing is left


def tiny_run(tmp_path, point=None):
    cfg = config_mod.from_dict({"model": {"base_channels": 4, "depth": 1},
                                "data": {"image_size": [16, 16], "mean": [0, 0, 0],
                                         "std": [1, 1, 1]}})
    model = build_model(cfg)
    save_weights(model, tmp_path / "model.safetensors")
    write_model_card(tmp_path, cfg)
    if point:
        write_operating_point(tmp_path, point, {"max_false_alarm": 0.05})
    return tmp_path


def test_operating_point_is_recorded_read_and_used_unless_overridden(tmp_path):
    run = tiny_run(tmp_path / "run", OperatingPoint(0.7, 0.01))
    assert read_operating_point(run) == OperatingPoint(0.7, 0.01)
    assert json.loads((run / "operating_point.json").read_text())["max_false_alarm"] == 0.05
    p = Predictor.from_run(run, "cpu", default_min_area=0.005)  # the recorded point wins
    assert (p.threshold, p.min_area, p.point_source) == (0.7, 0.01, "operating_point.json")
    p = Predictor.from_run(run, "cpu", threshold=0.6)  # a given value replaces only its own
    assert (p.threshold, p.min_area, p.point_source) == (0.6, 0.01, "options")
    p = Predictor.from_run(run, "cpu", threshold=0.4, min_area=0.0)
    assert (p.threshold, p.min_area) == (0.4, 0.0)
    probs = torch.zeros(1, 10, 10)
    probs[0, 0, 0] = 0.9  # 1 % of the frame: not more than min_area 0.01
    assert Predictor.from_run(run, "cpu").labels(probs).sum() == 0
    assert p.labels(probs).sum() == 1
    plain = tiny_run(tmp_path / "plain")
    assert read_operating_point(plain) is None
    default = Predictor.from_run(plain, "cpu")
    assert (default.threshold, default.min_area, default.point_source) == (0.5, 0, "defaults")
    video = Predictor.from_run(plain, "cpu", default_min_area=0.005)  # what video alarms use
    assert (video.threshold, video.min_area) == (0.5, 0.005)
    (plain / "operating_point.json").write_text("{not json")
    with pytest.raises(RunError, match="operating_point.json: not a readable operating point"):
        Predictor.from_run(plain, "cpu")


def test_hub_and_onnx_exports_carry_the_operating_point(tmp_path):
    from unetkit.deploy.export import export

    run = tiny_run(tmp_path / "run", OperatingPoint(0.65, 0.002))
    export(run, "hub", tmp_path / "hub")
    assert read_operating_point(tmp_path / "hub") == OperatingPoint(0.65, 0.002)
    pytest.importorskip("onnxruntime")
    sidecar = export(run, "onnx", tmp_path / "model.onnx")
    assert (sidecar["threshold"], sidecar["min_area"]) == ("0.65", "0.002")
