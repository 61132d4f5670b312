"""`calibrate` states the sample it decided from, warns below the floor (docs/metrics.md) and
draws the sensitivity / false-alarm curve with the chosen point."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

from conftest import run_cli
from contracts import FIXTURE_RUN


def _negatives(folder, count):
    folder.mkdir()
    for i in range(count):
        Image.fromarray(np.full((32, 32, 3), 90 + i, np.uint8)).save(folder / f"n{i}.jpg")
    return folder


def test_calibrate_names_its_sample_warns_below_the_floor_and_draws_the_curve(synthetic_data,
                                                                               tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE_RUN, run)
    few = _negatives(tmp_path / "few", 4)
    proc = run_cli("calibrate", str(run), "--data", str(synthetic_data), "--split", "all",
                   "--negatives", str(few), "--max-false-alarm", "0.25", "--quiet")
    assert "decided from 48 frames with foreground and 4 without (floor: 30 and 30" in proc.stdout
    assert "warning: " in proc.stderr
    assert "decided from 4 frames without (fewer than 30 for a 25.0% target)" in proc.stderr
    point = json.loads((run / "operating_point.json").read_text())
    assert point["sample"] == {"frames_positive": 48, "frames_negative": 4,
                               "floor_positive": 30, "floor_negative": 30}
    curve = Image.open(run / "operating_point.png")
    assert curve.format == "PNG" and curve.width > 300
    # the chosen point is drawn in red: some pixels are pure-ish red
    rgb = np.asarray(curve.convert("RGB")).astype(int)
    assert ((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)).sum() > 20

    enough = _negatives(tmp_path / "enough", 30)
    proc = run_cli("calibrate", str(run), "--data", str(synthetic_data), "--split", "all",
                   "--negatives", str(enough), "--max-false-alarm", "0.25", "--quiet")
    assert "decided from 48 frames with foreground and 30 without" in proc.stdout
    assert "decided from" not in proc.stderr
