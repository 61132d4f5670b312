"""Evaluation of a trained model on a data folder, at each image's own size."""

from __future__ import annotations

import torch

from unetkit.evaluation.field_metrics import FieldMetrics
from unetkit.evaluation.frames import frame_row, predicted_frames, scoring_items
from unetkit.evaluation.metrics import SegmentationMetrics
from unetkit.inference.detection import foreground, frame_summary
from unetkit.inference.predictor import Predictor
from unetkit.io.images import MaskDecoder


def evaluate(run_dir, data_dir, split: str = "val", tta: bool = False, batch_size: int = 16,
             device: str | None = None, progress: bool = True, negatives: list[str] = (),
             threshold: float | None = None, min_area: float | None = None,
             rows: list | None = None, on_frame=None,
             metrics: SegmentationMetrics | None = None) -> dict:
    """Scores of the run's model on one split of `data_dir` (see `metrics` for definitions),
    plus frame detection (see `detection`): sensitivity, false-alarm rate and AUROC.

    The split is resolved with the run's own data settings (layout, mask encoding, split files
    or seed), so `--split val` is the run's validation set, its negative frames included.
    `negatives`: folders of frames without foreground, scored too. Pixel scores count the frames
    with foreground only. `field` holds the polyp literature's columns on those frames (mDice
    and mIoU over 256 thresholds, wF, S, E, MAE: see `field_metrics`), from the foreground
    probability map at the image's size; the top-level mDice and mIoU are at the operating
    point. Predictions use the run's operating point unless `threshold` or
    `min_area` is given, and are compared with the masks at full resolution. Every pair is
    checked as `check-data` checks it; a bad one stops the scoring with the list of problems.
    `rows`, when given, receives every frame's scores (see `frames.frame_row`);
    `on_frame(row, image, truth, probs, labels)` is called for every frame (the report's
    pictures); `metrics`: an empty accumulator to fill (its counts can then be pooled with
    others, as the out-of-fold scores are).
    """
    predictor = Predictor.from_run(run_dir, device, tta=tta, threshold=threshold,
                                   min_area=min_area)
    scores = evaluate_predictor(predictor, data_dir, split, batch_size, progress, negatives,
                                rows, on_frame, metrics)
    given = threshold is not None or min_area is not None
    return {"split": split, "tta": tta, **scores,
            "operating_point": "given" if given else "calibrated" if predictor.point
            else "default"}


def evaluate_predictor(predictor: Predictor, data_dir, split: str = "val", batch_size: int = 16,
                       progress: bool = True, negatives: list[str] = (),
                       rows: list | None = None, on_frame=None,
                       metrics: SegmentationMetrics | None = None) -> dict:
    """The scores of `evaluate` for any Predictor (e.g. one running an ONNX model)."""
    cfg = predictor.cfg
    items = scoring_items(cfg, data_dir, split, list(negatives))
    decoder = MaskDecoder.from_config(cfg)
    ignore = cfg.data.ignore_index
    if metrics is None:
        metrics = SegmentationMetrics(cfg.num_classes, cfg.data.classes, ignore)
    field = FieldMetrics()  # the literature's columns, on the foreground probability map
    frames = [] if rows is None else rows
    for it, image, truth, probs in predicted_frames(predictor, items, decoder, batch_size,
                                                    progress, f"evaluating {split}"):
        labels = predictor.labels(probs)
        row = frame_row(it.name, truth, labels, probs, cfg.num_classes, predictor.min_area, ignore)
        frames.append(row)
        if on_frame is not None:
            on_frame(row, image, truth, probs, labels)
        if row["positive"]:
            metrics.update(torch.from_numpy(labels)[None], torch.from_numpy(truth)[None])
            field.add(foreground(probs).clip(0, 1), truth > 0)
    pixel = metrics.compute()
    if not metrics.images:  # no frame with foreground: pixel scores would be 0/0
        pixel = {k: None for k in pixel}
        pixel["images"] = 0
    return {**pixel, **frame_summary(frames), "field": field_columns(field),
            "threshold": predictor.threshold, "min_area": predictor.min_area}


def field_columns(field: FieldMetrics) -> dict | None:
    """The papers' columns (see evaluation.field_metrics), None without a frame to score."""
    if not field.count:
        return None
    return {k: v for k, v in field.results().items() if k != "curves"}
