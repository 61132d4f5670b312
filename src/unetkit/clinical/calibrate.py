"""Choosing an operating point (threshold, min_area) on validation frames.

Each frame's foreground probabilities are binned once (100 bins of width 0.01), split by true
class and predicted foreground class, so the pixel counts at every threshold of the grid
0.01, 0.02, ..., 0.99 come from cumulative sums and no frame is predicted twice. For every
threshold t and minimum area a of `AREAS`, a frame is flagged when more than a of it is above t
(see `detection`). The search keeps the points whose false-alarm rate on the negative frames is
at most the target, and among them picks the fewest missed positive frames, then the highest
mDice@point over positive frames, then the lowest threshold and area.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetkit.data.folders import DataError
from unetkit.inference.detection import OperatingPoint, _numpy, foreground

BINS = 100
THRESHOLDS = np.arange(1, BINS) / BINS  # 0.01 .. 0.99
AREAS = (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
         0.1)


# The sample below which a chosen point is a guess (docs/metrics.md, "Calibration sample"): 30
# frames with foreground give sensitivity to about +-0.15 (95 %); on n negative frames without
# a false alarm the rate can still be up to 3/n (the rule of three), so the target needs
# n >= 3 / target, and at least 30 as well.
MIN_POSITIVE = 30
MIN_NEGATIVE = 30
CURVE_FILE = "operating_point.png"


def negative_floor(max_false_alarm: float) -> int:
    """Negative frames needed to check a false-alarm target (a 0 target is checked as 1 %)."""
    return max(MIN_NEGATIVE, int(np.ceil(3 / max(max_false_alarm, 0.01) - 1e-9)))


def sample_warning(positive: int, negative: int, max_false_alarm: float) -> str | None:
    """The warning of a calibration decided from too few frames, None when enough."""
    floor = negative_floor(max_false_alarm)
    short = ([f"{positive} frames with foreground (fewer than {MIN_POSITIVE})"]
             if positive < MIN_POSITIVE else [])
    short += ([f"{negative} frames without (fewer than {floor} for a "
               f"{max_false_alarm:.1%} target)"] if negative < floor else [])
    if not short:
        return None
    return (f"decided from {' and '.join(short)}: the point and its rates are uncertain; "
            "calibrate on more frames (see docs/metrics.md, Calibration sample)")


class CalibrationError(DataError):
    """Calibration data that cannot pick an operating point; the message says what to do."""


@dataclass
class FrameCounts:
    """One frame's pixels binned by foreground probability: counts[truth, predicted class, bin].

    A pixel lands in bin j when its foreground probability lies in (j/100, (j+1)/100] (bin 0
    also holds 0), so "probability > j/100" is exactly "bin >= j". `predicted class` is the
    likeliest foreground class (always 1 for a binary model)."""
    counts: np.ndarray  # (K, K, BINS) int64
    positive: bool

    @classmethod
    def from_probs(cls, probs, truth: np.ndarray, num_classes: int,
                   ignore_index: int | None = None) -> FrameCounts:
        p = _numpy(probs)
        fg = foreground(p)
        multi = p.ndim == 3 and p.shape[0] > 1
        cls_ = p[1:].argmax(0) + 1 if multi else np.ones(fg.shape, np.int64)
        bins = np.clip(np.ceil(fg.astype(np.float64) * BINS).astype(np.int64) - 1, 0, BINS - 1)
        t = truth.astype(np.int64)
        valid = (t >= 0) & (t < num_classes)
        if ignore_index is not None:
            valid &= t != ignore_index
        k = num_classes
        key = (t[valid] * k + cls_[valid]) * BINS + bins[valid]
        counts = np.bincount(key, minlength=k * k * BINS).reshape(k, k, BINS)
        return cls(counts, bool(((t > 0) & valid).any()))

    def at(self) -> tuple[np.ndarray, np.ndarray]:
        """(per-threshold Dice averaged over foreground classes, with a prediction kept
        (shape (99,)); foreground area fraction above each threshold (shape (99,)))."""
        above = self.counts[:, :, ::-1].cumsum(2)[:, :, ::-1][:, :, 1:]  # bin >= j, j = 1..99
        total = self.counts.sum()
        area = above.sum((0, 1)) / max(1, total)
        k = self.counts.shape[0]
        truth_pixels = self.counts.sum((1, 2))  # per true class
        dices = []
        for c in range(1, k):
            tp = above[c, c]
            predicted = above[:, c].sum(0)
            fn = truth_pixels[c] - tp
            denom = tp + predicted + fn  # 2tp + fp + fn
            dices.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 1.0))
        return np.mean(dices, 0), area

    def empty_dice(self) -> float:
        """Dice of an empty prediction: 1 per class absent from the truth, 0 per class present."""
        truth_pixels = self.counts.sum((1, 2))[1:]
        return float((truth_pixels == 0).mean())


def grid(frames: list[FrameCounts]) -> dict[str, np.ndarray]:
    """Sensitivity, false-alarm rate and mDice@point over positive frames at every (threshold,
    area): arrays of shape (len(THRESHOLDS), len(AREAS))."""
    areas = np.asarray(AREAS)
    pos = [f for f in frames if f.positive]
    neg = [f for f in frames if not f.positive]
    shape = (len(THRESHOLDS), len(areas))
    sens, fa, mdice = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for f in pos:
        dice, area = f.at()
        flagged = area[:, None] > areas[None, :]
        sens += flagged
        mdice += np.where(flagged, dice[:, None], f.empty_dice())
    for f in neg:
        _, area = f.at()
        fa += area[:, None] > areas[None, :]
    n_pos, n_neg = max(1, len(pos)), max(1, len(neg))
    return {"sensitivity": sens / n_pos, "false_alarm_rate": fa / n_neg,
            "mDice_point": mdice / n_pos}


def index_of(threshold: float, min_area: float) -> tuple[int, int]:
    """The grid cell of a point (the nearest threshold, the nearest area)."""
    i = int(np.clip(round(threshold * BINS) - 1, 0, len(THRESHOLDS) - 1))
    j = int(np.abs(np.asarray(AREAS) - min_area).argmin())
    return i, j


def search(frames: list[FrameCounts], max_false_alarm: float, data: str | None = None
           ) -> tuple[OperatingPoint, dict]:
    """The operating point with false alarms <= target and the fewest misses (then the highest
    mDice@point, the lowest threshold, the smallest area); and the grid it was chosen from. `data`:
    the --data given (None: the run's own), for the messages."""
    if not any(not f.positive for f in frames):
        raise CalibrationError("no frame without foreground to measure false alarms on: give "
                               "--negatives DIR (or train with data.negatives)")
    if not any(f.positive for f in frames):
        raise CalibrationError(
            f"no frame with foreground to measure sensitivity on in {data}: its masks are all "
            "empty under the run's mask settings; give --data a folder (or --split) whose masks "
            "show the lesions" if data else "no frame with foreground to measure sensitivity "
            "on: give --data")
    g = grid(frames)
    ok = g["false_alarm_rate"] <= max_false_alarm + 1e-12
    if not ok.any():
        best = g["false_alarm_rate"].min()
        raise CalibrationError(f"no threshold and min_area keep false alarms at or under "
                               f"{max_false_alarm:.1%} (the lowest reachable is {best:.1%}); "
                               "raise --max-false-alarm or train with negative frames")
    # Lexicographic choice: np.lexsort sorts by the last key first.
    ti, ai = np.nonzero(ok)
    order = np.lexsort((ai, ti, -g["mDice_point"][ti, ai], -g["sensitivity"][ti, ai]))
    i, j = ti[order[0]], ai[order[0]]
    return OperatingPoint(float(THRESHOLDS[i]), float(AREAS[j])), g


def plot_curve(g: dict, point: OperatingPoint, path: Path) -> None:
    """Sensitivity against false alarms over the thresholds, at the chosen min_area."""
    from unetkit.io.plots import plot_operating_curve

    i, j = index_of(point.threshold, point.min_area)
    plot_operating_curve(g["false_alarm_rate"][:, j], g["sensitivity"][:, j],
                         (g["false_alarm_rate"][i, j], g["sensitivity"][i, j]), path,
                         "Operating point", f"thresholds 0.01-0.99, min_area {point.min_area}")


def scores_at(g: dict, threshold: float, min_area: float) -> dict:
    i, j = index_of(threshold, min_area)
    return {"threshold": float(THRESHOLDS[i]), "min_area": float(AREAS[j]),
            **{k: float(v[i, j]) for k, v in g.items()}}


def calibrate(run_dir, data_dir, max_false_alarm: float, split: str = "val",
              negatives: list[str] = (), tta: bool = False, batch_size: int = 16,
              device: str | None = None, progress: bool = True) -> dict:
    """Choose the run's operating point on validation frames and record it in the run folder
    (RUN_DIR/operating_point.json). Returns the point, the scores before (the run's threshold,
    no minimum area) and after, and the frame counts."""
    from unetkit.core.files import check_outputs
    from unetkit.evaluation.frames import predicted_frames, scoring_items
    from unetkit.inference.detection import OPERATING_POINT_FILE, write_operating_point
    from unetkit.inference.predictor import Predictor
    from unetkit.io.images import MaskDecoder
    from unetkit.runs.check import resolve_model_dir

    if not 0 <= max_false_alarm < 1:
        raise CalibrationError(f"--max-false-alarm must be in [0, 1), got {max_false_alarm}")
    predictor = Predictor.from_run(run_dir, device, tta=tta)
    cfg = predictor.cfg
    point_file = resolve_model_dir(run_dir) / OPERATING_POINT_FILE  # its own file: replaced
    check_outputs([(point_file, "the operating point")], owned=[point_file],
                  input_dirs=[Path(d) for d in (data_dir, *negatives) if d])
    items = scoring_items(cfg, data_dir, split, list(negatives))
    decoder = MaskDecoder.from_config(cfg)
    frames = [FrameCounts.from_probs(probs, truth, cfg.num_classes, cfg.data.ignore_index)
              for _, _, truth, probs in predicted_frames(predictor, items, decoder, batch_size,
                                                         progress, "calibrating")]
    point, g = search(frames, max_false_alarm, str(data_dir) if data_dir else None)
    result = {
        "max_false_alarm": max_false_alarm, "tta": tta,
        "data": str(data_dir) if data_dir else None, "split": split,
        "negatives": [str(n) for n in negatives],
        "frames_positive": sum(f.positive for f in frames),
        "frames_negative": sum(not f.positive for f in frames),
        "before": scores_at(g, cfg.train.threshold, 0.0),
        "after": scores_at(g, point.threshold, point.min_area),
    }
    warnings = []
    if result["after"]["sensitivity"] == 0:
        warnings.append(f"sensitivity 0 at this point: no frame with foreground is flagged "
                        f"while false alarms stay at or under {max_false_alarm:.1%}; this "
                        "point misses every lesion (raise --max-false-alarm, or train with "
                        "more data or negative frames)")
    small = sample_warning(result["frames_positive"], result["frames_negative"], max_false_alarm)
    warnings += [small] if small else []
    if warnings:
        result["warning"] = "; ".join(warnings)
    result["sample"] = {"frames_positive": result["frames_positive"],
                        "frames_negative": result["frames_negative"],
                        "floor_positive": MIN_POSITIVE,
                        "floor_negative": negative_floor(max_false_alarm)}
    write_operating_point(run_dir, point, result)
    plot_curve(g, point, Path(run_dir) / CURVE_FILE)
    result["curve"] = str(Path(run_dir) / CURVE_FILE)
    return {"threshold": point.threshold, "min_area": point.min_area, **result}
