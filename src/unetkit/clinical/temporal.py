"""Temporal smoothing of frame-level polyp detections, and alarms as time intervals.

A frame is *detected* when its predicted foreground covers more than `min_area` of the frame
(the run's calibrated operating point where there is one). Single-frame detections are mostly
false alarms (a reflection, a bubble, a fold): published colonoscopy detectors raise an alarm only
when a detection persists. Here an alarm is raised on a frame when at least `k` of the last `n`
frames (that frame included) are detected; it therefore starts `k - 1` frames after a persistent
detection starts and ends `n - k` frames after it stops. `k = n = 1` turns smoothing off.

An exponential moving average of the probability maps (`ema` = the weight of the past, 0 = off)
steadies the outlines drawn on the video; when it is on, the frame-level detection that feeds the
k-of-n rule is taken on the averaged map.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEFAULT_MIN_AREA = 0.005  # a frame is detected when its foreground covers > 0.5 % of it


@dataclass
class Smoothing:
    k: int = 3  # an alarm needs a detection on k ...
    n: int = 5  # ... of the last n frames (3 of 5: 120-200 ms at 25 frames/s)
    ema: float = 0.0  # weight of the past in the moving average of probability maps; 0 = off

    def validate(self) -> Smoothing:
        # Imported here: the command line reads this module's defaults to parse its options,
        # without the configuration's validation library.
        from unetkit.config.schema import ConfigError

        if not (1 <= self.k <= self.n):
            raise ConfigError(f"alarm rule k={self.k} of n={self.n}: need 1 <= k <= n "
                             "(e.g. --alarm-k 3 --alarm-n 5; k = n = 1 turns smoothing off)")
        if not (0 <= self.ema < 1):
            raise ConfigError(f"--ema {self.ema}: the weight of the past must be in [0, 1)")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class AlarmRule:
    """The k-of-n rule, one frame at a time (for live video)."""

    def __init__(self, k: int, n: int):
        self.k = k
        self.window: deque[bool] = deque(maxlen=n)

    def update(self, detected: bool) -> bool:
        self.window.append(bool(detected))
        return sum(self.window) >= self.k


class MovingAverage:
    """Exponential moving average of (K, H, W) probability maps; weight 0 passes maps through."""

    def __init__(self, weight: float):
        self.weight = weight
        self.state: torch.Tensor | None = None

    def update(self, probs: torch.Tensor) -> torch.Tensor:
        if self.weight == 0:
            return probs
        if self.state is None or self.state.shape != probs.shape:  # first frame, or size change
            self.state = probs.clone()
        else:
            self.state.mul_(self.weight).add_(probs, alpha=1 - self.weight)
        return self.state


def smooth_detections(detected: Sequence[bool], k: int, n: int) -> list[bool]:
    """The alarm state of every frame of a recorded sequence under the k-of-n rule."""
    rule = AlarmRule(k, n)
    return [rule.update(d) for d in detected]


def runs_of(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, last) frame indices of each maximal run of True values."""
    runs, start = [], None
    for i, f in enumerate(flags):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(flags) - 1))
    return runs


def alarm_intervals(alarms: Sequence[bool], times: Sequence[float],
                    frame_duration: float) -> list[dict]:
    """Alarms as time intervals: from the first alarm frame's time to the end of the last one's
    display (its time + one frame duration), with frame numbers (1-based, as on the video)."""
    out = []
    for first, last in runs_of(alarms):
        start, end = times[first], times[last] + frame_duration
        out.append({"start_frame": first + 1, "end_frame": last + 1, "start_s": round(start, 4),
                    "end_s": round(end, 4), "duration_s": round(end - start, 4),
                    "frames": last - first + 1})
    return out
