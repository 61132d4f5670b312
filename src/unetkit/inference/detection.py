"""Frame-level detection: does a frame show a polyp (any foreground class) at all?

Conventions (the same in `evaluate`, `calibrate`, `report`, prediction and video):
- A frame is *detected* (flagged) when its predicted foreground, after the threshold, covers
  more than `min_area` of its pixels (a fraction, 0.005 = 0.5 % of the frame). Foreground is
  every class but the background, so a 3-class NeoPolyp model flags a frame with either polyp.
- Under an operating point, a frame that is not detected gets an empty mask: `min_area` removes
  the small, doubtful predictions that make most false alarms.
- A frame is *positive* when its true mask has a foreground pixel, *negative* otherwise.
  Sensitivity = detected positive frames / positive frames; false-alarm rate = detected negative
  frames / negative frames.
- The per-frame score (for AUROC) is `frame_score`: the foreground probability that the most
  confident `SCORE_AREA` (0.5 %) of the frame's pixels exceed. Thresholding it at t is exactly
  "more than 0.5 % of the frame above t", so it ranks frames the way the detection rule does.
- Pixel scores (mDice_point, mIoU_point, dice, ...) are computed over the positive frames only:
  on a frame without a polyp Dice is 1 or 0 (empty or not), which is the false-alarm rate again.

An operating point (threshold, min_area) is chosen by `unetkit calibrate` and recorded as
RUN_DIR/operating_point.json; prediction, evaluation, the web page, submissions and exports use
it unless given another threshold or min_area.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

OPERATING_POINT_FILE = "operating_point.json"
MAX_POINT_BYTES = 1_000_000  # a threshold, a min_area and how they were chosen
SCORE_AREA = 0.005  # the share of the frame whose least probability is the frame's score


@dataclass
class OperatingPoint:
    threshold: float  # foreground probability above which a pixel is foreground
    min_area: float  # a frame is flagged when its foreground covers more than this fraction


class PointError(ValueError):
    """A threshold or min_area out of range; the message names where it came from."""


def check_point(threshold: float | None, min_area: float | None, where: str | None = None
                ) -> None:
    """The one rule on an operating point, wherever it comes from (options, the page, a file):
    threshold in (0, 1) (1 would mark nothing, 0 everything) and min_area in [0, 1). `where`
    names the file; without it the values are command-line options."""
    names = (f"{where}: threshold", "min_area") if where else ("--threshold", "--min-area")
    if threshold is not None and not (_is_number(threshold) and 0 < threshold < 1):
        raise PointError(f"{names[0]} must be between 0 and 1 (exclusive), got {threshold}")
    if min_area is not None and not (_is_number(min_area) and 0 <= min_area < 1):
        raise PointError(f"{names[1]} must be at least 0 and below 1 (a fraction of the frame), "
                         f"got {min_area}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def resolve_point(cfg, point: OperatingPoint | None, threshold: float | None = None,
                  min_area: float | None = None, default_min_area: float = 0.0
                  ) -> tuple[OperatingPoint, str]:
    """The one place the operating point is resolved, and where it came from: a given threshold
    or min_area first ("options"), then the run's calibrated point (operating_point.json), then
    the training threshold and `default_min_area` ("defaults": 0 keeps every pixel; frame-level
    alarms pass their own default)."""
    check_point(threshold, min_area)
    resolved = OperatingPoint(
        (point.threshold if point else cfg.train.threshold) if threshold is None else threshold,
        (point.min_area if point else default_min_area) if min_area is None else min_area)
    source = ("options" if threshold is not None or min_area is not None
              else OPERATING_POINT_FILE if point else "defaults")
    return resolved, source


def read_operating_point(run_dir) -> OperatingPoint | None:
    """The operating point recorded in RUN_DIR/operating_point.json, or None when there is none."""
    from unetkit.core.files import read_limited
    from unetkit.runs.folder import RunError

    path = Path(run_dir) / OPERATING_POINT_FILE
    if not path.exists() and not path.is_symlink():
        return None
    try:
        values = json.loads(read_limited(path, MAX_POINT_BYTES, "an operating_point.json",
                                         inside=run_dir, error=RunError))
        point = OperatingPoint(float(values["threshold"]), float(values["min_area"]))
    except FileNotFoundError:
        raise RunError(f"{path}: a link to a file that does not exist; run `unetkit calibrate` "
                       "again or delete the file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, RunError):
            raise
        raise RunError(f"{path}: not a readable operating point ({exc}); run `unetkit calibrate` "
                       "again or delete the file") from None
    try:
        check_point(point.threshold, point.min_area, str(path))
    except PointError as exc:
        raise RunError(f"{exc}; run `unetkit calibrate` again or delete the file") from None
    return point


def write_operating_point(run_dir, point: OperatingPoint, details: dict) -> Path:
    from unetkit.core.files import write_text

    path = Path(run_dir) / OPERATING_POINT_FILE
    write_text(path, json.dumps({**asdict(point), **details}, indent=2))
    return path


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def foreground(probs) -> np.ndarray:
    """(H, W) probability of any foreground class, from (K, H, W) probabilities (K=1: binary,
    the sigmoid of the one logit; K>1: softmax, background first) or an (H, W) map."""
    p = _numpy(probs)
    if p.ndim == 2:
        return p
    return p[0] if p.shape[0] == 1 else 1.0 - p[0]


def frame_score(probs, area: float = SCORE_AREA) -> float:
    """The per-frame score: the foreground probability exceeded by the `area` fraction of the
    frame's pixels that the model is surest of (at least one pixel)."""
    fg = foreground(probs).ravel()
    k = max(1, math.ceil(area * fg.size))
    top = fg
    if fg.size > 1 << 16:  # a video frame: 7x faster at 720x576, where it runs on every frame
        # Partition only the values at or above a bound read off every 16th pixel (about the
        # map's 2k-th largest). Exact: the bound is used only if at least k values reach it.
        sample = fg[::16]
        j = min(sample.size, 2 * -(-k // 16))
        bound = np.partition(sample, sample.size - j)[sample.size - j]
        above = fg[fg >= bound]
        top = above if above.size >= k else fg
    return float(np.partition(top, top.size - k)[top.size - k])


def is_detected(labels, min_area: float) -> bool:
    """Whether a (H, W) class map flags its frame: foreground on more than `min_area` of it."""
    labels = _numpy(labels)
    return bool((labels > 0).mean() > min_area) if labels.size else False


def labels_at(probs, threshold: float, min_area: float = 0.0) -> np.ndarray:
    """(K, H, W) probabilities -> (H, W) uint8 class map at an operating point: foreground where
    its probability is above `threshold` (multi-class: then the likeliest foreground class),
    and an empty map when the frame is not detected."""
    p = _numpy(probs)
    fg = foreground(p) > threshold
    if p.ndim == 3 and p.shape[0] > 1:
        labels = np.where(fg, p[1:].argmax(0) + 1, 0).astype(np.uint8)
    else:
        labels = fg.astype(np.uint8)
    return labels if is_detected(labels, min_area) else np.zeros_like(labels)


def auroc(positive_scores, negative_scores) -> float | None:
    """Area under the ROC curve of scores between positive and negative frames: the chance that
    a random positive frame scores above a random negative one (ties count half); None when
    either kind of frame is missing."""
    pos, neg = np.asarray(positive_scores, float), np.asarray(negative_scores, float)
    if not len(pos) or not len(neg):
        return None
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties (1-based), the Mann-Whitney U statistic's convention.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def frame_summary(rows: list[dict]) -> dict:
    """Frame-level scores from per-frame rows with keys `positive`, `detected`, `score`:
    sensitivity, false-alarm rate (None without such frames), AUROC and the frame counts."""
    pos = [r for r in rows if r["positive"]]
    neg = [r for r in rows if not r["positive"]]
    rate = lambda rs: sum(r["detected"] for r in rs) / len(rs) if rs else None  # noqa: E731
    return {"frames_positive": len(pos), "frames_negative": len(neg),
            "sensitivity": rate(pos), "false_alarm_rate": rate(neg),
            "auroc": auroc([r["score"] for r in pos], [r["score"] for r in neg])}
