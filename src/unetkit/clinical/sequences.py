"""Detection over sequences: frames with masks in playing order, grouped into videos.

CVC-ColonDB's 380 frames come from 15 colonoscopy videos (`sequences.csv`: frame, sequence, in
playing order). Per sequence and frame, the model's frame-level detection (see `video`) is
compared with the truth, raw and after temporal smoothing (see `temporal`):
- a polyp frame is one whose mask has foreground; a *hit* is a detected (raw) polyp frame
  whose predicted foreground overlaps the true one, or an alarmed (smoothed) polyp frame where
  the region of the latest detection overlaps it (an alarm holds over a missed frame);
- sensitivity = hits / polyp frames;
- a *false-alarm frame* is a detected (or alarmed) frame that is not a hit (no polyp there, or a
  detection elsewhere); *false alarms* count maximal runs of such frames, as a reviewer would
  count them on the video;
- a sequence is detected when at least one of its frames is a hit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.clinical.temporal import DEFAULT_MIN_AREA, AlarmRule, MovingAverage, Smoothing, runs_of
from unetkit.core.text import plural
from unetkit.data.folders import DataError
from unetkit.data.splits import resolve_split
from unetkit.data.tables import read_table
from unetkit.inference.detection import is_detected
from unetkit.inference.predictor import Predictor
from unetkit.io.images import MaskDecoder, read_mask


def read_sequences(path: Path) -> dict[str, list[str]]:
    """{sequence: [frame stems in playing order]} from a CSV of frame, sequence (header row)."""
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for frame, seq in read_table(path, "sequence"):
        stem = Path(frame).stem
        if stem in seen:  # 1.jpg and 1.png: one frame of the data folder, listed twice
            raise DataError(f"{path}: '{frame}' and '{seen[stem]}' are the same frame {stem}; "
                            "keep one row each")
        seen[stem] = frame
        out.setdefault(seq, []).append(stem)
    return out


def _counts(hits: list[bool], alarms: list[bool], positive: list[bool]) -> dict:
    false = [a and not h for a, h in zip(alarms, hits, strict=True)]
    polyp = sum(positive)
    return {"hits": sum(hits), "sensitivity": sum(hits) / polyp if polyp else None,
            "false_alarm_frames": sum(false), "false_alarms": len(runs_of(false)),
            "detected": any(hits),
            "first_hit_frame": hits.index(True) + 1 if any(hits) else None}


def evaluate_sequences(run_dir, data_dir, sequences: str | Path, smoothing: Smoothing,
                       threshold: float | None = None, min_area: float | None = None,
                       backend: str = "torch", device: str | None = None,
                       progress: bool = True) -> dict:
    """Per-sequence and total detection scores, raw and smoothed (see the module docstring)."""
    smoothing.validate()
    data_dir = Path(data_dir)
    path = Path(sequences)
    path = path if path.exists() or path.is_absolute() else data_dir / sequences
    if not path.exists():
        raise DataError(f"{sequences}: no such sequence table (CSV: frame, sequence)")
    groups = read_sequences(path)  # the table first: it is cheaper than the model
    predictor = Predictor.from_run(run_dir, device, backend, threshold=threshold,
                                   min_area=min_area, default_min_area=DEFAULT_MIN_AREA)
    result = score_sequences(predictor, data_dir, groups, smoothing, progress)
    result["settings"].update(operating_point_source=predictor.point_source, backend=backend)
    return {"data": str(data_dir), "sequences_file": str(path), **result}


def score_sequences(predictor: Predictor, data_dir: Path, groups: dict[str, list[str]],
                    smoothing: Smoothing, progress: bool = False) -> dict:
    """The scores of `evaluate_sequences` for any Predictor and {sequence: [frame stems]}."""
    from tqdm.auto import tqdm

    cfg = predictor.cfg
    items = {it.name: it for it in resolve_split(cfg, data_dir, "all")}
    missing = [s for frames in groups.values() for s in frames if s not in items]
    if missing:
        raise DataError(f"{plural(len(missing), 'frame')} of the sequence table with no "
                        "image+mask pair "
                        f"in {data_dir} (first: {missing[:3]})")
    decoder, min_area = MaskDecoder.from_config(cfg), predictor.min_area
    per_seq, bar = {}, tqdm(total=sum(map(len, groups.values())), unit="frame",
                            desc="sequences", disable=not progress)
    for seq, frames in groups.items():
        ema, rule = MovingAverage(smoothing.ema), AlarmRule(smoothing.k, smoothing.n)
        rows, latest = [], None  # latest: the region of the latest detection
        for stem in frames:
            image = predictor.read(items[stem].image)
            truth = read_mask(items[stem].mask, decoder) > 0
            probs = predictor.probabilities([image])[0]
            raw = predictor.labels(probs)
            labels = raw if smoothing.ema == 0 else predictor.labels(ema.update(probs))
            det, det_smooth = is_detected(raw, min_area), is_detected(labels, min_area)
            latest = labels > 0 if det_smooth else latest
            alarm = rule.update(det_smooth)
            rows.append((bool(truth.any()), det, det and bool(np.any((raw > 0) & truth)),
                         alarm, alarm and bool(np.any(latest & truth))))
            bar.update()
        positive = [r[0] for r in rows]
        per_seq[seq] = {"frames": len(rows), "polyp_frames": sum(positive),
                        "raw": _counts([r[2] for r in rows], [r[1] for r in rows], positive),
                        "smoothed": _counts([r[4] for r in rows], [r[3] for r in rows], positive)}
    bar.close()
    total = {"sequences": len(per_seq), "frames": sum(s["frames"] for s in per_seq.values()),
             "polyp_frames": sum(s["polyp_frames"] for s in per_seq.values())}
    for kind in ("raw", "smoothed"):
        hits = sum(s[kind]["hits"] for s in per_seq.values())
        total[kind] = {
            "sensitivity": hits / total["polyp_frames"] if total["polyp_frames"] else None,
            "false_alarm_frames": sum(s[kind]["false_alarm_frames"] for s in per_seq.values()),
            "false_alarms": sum(s[kind]["false_alarms"] for s in per_seq.values()),
            "sequences_detected": sum(s[kind]["detected"] for s in per_seq.values())}
    return {"settings": {**smoothing.to_dict(), "threshold": predictor.threshold,
                         "min_area": min_area}, "total": total, "per_sequence": per_seq}
