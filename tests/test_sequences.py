"""Sequence evaluation: per-sequence sensitivity and false alarms, raw and smoothed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import real_data, run_cli
from run_fixtures import make_run
from test_video import TINY, RedIsPolyp
from unetkit import config as config_mod
from unetkit.clinical.sequences import read_sequences, score_sequences
from unetkit.clinical.temporal import Smoothing
from unetkit.inference.predictor import Predictor


def write_frames(root, sequences: dict[str, list[tuple[bool, bool]]]) -> None:
    """Per frame (polyp in the truth, red square drawn): images/, masks/, sequences.csv."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lines, n = ["frame,sequence"], 0
    for seq, frames in sequences.items():
        for truth, drawn in frames:
            n += 1
            img = np.full((48, 64, 3), 120, np.uint8)
            mask = np.zeros((48, 64), np.uint8)
            if drawn:
                img[10:30, 20:44] = (220, 30, 30)
            if truth:
                mask[10:30, 20:44] = 255
            Image.fromarray(img).save(root / "images" / f"{n}.png")
            Image.fromarray(mask).save(root / "masks" / f"{n}.png")
            lines.append(f"{n},{seq}")
    (root / "sequences.csv").write_text("\n".join(lines) + "\n")


def test_smoothing_trades_two_warm_up_frames_for_fewer_false_alarms(tmp_path):
    """Sequence A: a polyp on 10 frames, missed on the 6th. Sequence B: no polyp; a red
    distractor on frame 4 alone and on frames 6-8. Expected by hand for 3 of 5 frames."""
    a = [(True, i != 5) for i in range(10)]
    b = [(False, i == 3 or i >= 5) for i in range(8)]
    write_frames(tmp_path, {"A": a, "B": b})
    cfg = config_mod.load(None, None, TINY)
    cfg.data.mean, cfg.data.std = [0.5] * 3, [0.25] * 3
    groups = read_sequences(tmp_path / "sequences.csv")
    assert groups == {"A": [str(i) for i in range(1, 11)], "B": [str(i) for i in range(11, 19)]}
    r = score_sequences(Predictor(RedIsPolyp(), cfg, min_area=0.005), tmp_path, groups,
                        Smoothing(3, 5))
    A, B = r["per_sequence"]["A"], r["per_sequence"]["B"]
    assert (A["raw"]["sensitivity"], A["raw"]["false_alarm_frames"]) == (0.9, 0)
    # alarms on frames 3-10: the alarm holds over the missed 6th frame
    assert A["smoothed"]["sensitivity"] == 0.8 and A["smoothed"]["first_hit_frame"] == 3
    assert (B["raw"]["false_alarm_frames"], B["raw"]["false_alarms"]) == (4, 2)
    # frames 7 and 8 alarm (the lone frame 4 counts within their windows): one alarm, 2 frames
    assert (B["smoothed"]["false_alarm_frames"], B["smoothed"]["false_alarms"]) == (2, 1)
    assert B["polyp_frames"] == 0 and B["raw"]["sensitivity"] is None
    assert r["total"]["raw"]["sensitivity"] == 0.9 and r["total"]["smoothed"]["false_alarms"] == 1


@pytest.mark.slow
def test_evaluate_sequences_on_cvc_colondb(tmp_path):
    """The command on the real frames, the table's first three sequences (76 frames; a random
    model: the numbers are not scores, the test checks that every frame is read, counted once
    and in its sequence)."""
    import json

    data = real_data("cvc-colondb")
    lines = (data / "sequences.csv").read_text().splitlines()
    table = tmp_path / "first3.csv"
    keep = ("sequence", "1", "2", "3")
    table.write_text("\n".join(ln for ln in lines if ln.split(",")[-1] in keep))
    run = make_run(tmp_path / "run", TINY)
    out = tmp_path / "seq.json"
    proc = run_cli("evaluate", str(run), "--data", str(data), "--sequences", str(table),
                   "--json", str(out), "--quiet")
    scores = json.loads(out.read_text())
    assert scores["total"]["sequences"] == 3 and scores["total"]["frames"] == 76
    assert {k: v["frames"] for k, v in scores["per_sequence"].items()} == \
        {"1": 38, "2": 22, "3": 16}
    assert scores["total"]["polyp_frames"] == 76  # every CVC-ColonDB frame shows a polyp
    assert "total" in proc.stdout and "alarm on 3 of 5" in proc.stdout
