"""Evaluation of a trained model on a data folder, at each image's own size."""

from __future__ import annotations

import torch

from unetkit.evaluation.field_metrics import FieldMetrics
from unetkit.evaluation.frames import (
    default_split,
    frame_row,
    images_total,
    predicted_frames,
    scoring_items,
)
from unetkit.evaluation.metrics import SegmentationMetrics
from unetkit.inference.detection import foreground, frame_summary
from unetkit.inference.predictor import Predictor
from unetkit.io.images import MaskDecoder


def evaluate(run_dir, data_dir, split: str | None = None, tta: bool = False, batch_size: int = 16,
             device: str | None = None, progress: bool = True, negatives: list[str] = (),
             threshold: float | None = None, min_area: float | None = None,
             rows: list | None = None, on_frame=None,
             metrics: SegmentationMetrics | None = None) -> dict:
    """Scores of the run's model on one split of `data_dir` (see `metrics` for definitions),
    plus frame detection (see `detection`): sensitivity, false-alarm rate and AUROC.

    `split` None: the run's held-out `val` split of its own training data, every image of any
    other folder (`frames.default_split`). The result says what was scored: `split`,
    `images_scored` (frames, negatives included) of `images_total` (the folder's frames).

    The split is resolved with the run's own data settings (layout, mask encoding, split files
    or seed), so `--split val` is the run's validation set, its negative frames included.
    `negatives`: folders of frames without foreground, scored too. Pixel scores count the frames
    with foreground only. `field` holds the polyp literature's columns on those frames (mDice
    and mIoU over 256 thresholds, wF, S, E, MAE: see `field_metrics`), from the foreground
    probability map at the image's size. The top-level mDice_point and mIoU_point are at the
    operating point; a binary model's top-level mDice and mIoU are the literature's (the
    field's), a multi-class model has none (its field columns score any foreground).
    Predictions use the run's operating point unless `threshold` or `min_area` is given, and
    are compared with the masks at full resolution. Every pair is checked as `check-data`
    checks it; a bad one stops the scoring with the list of problems.
    `rows`, when given, receives every frame's scores (see `frames.frame_row`);
    `on_frame(row, image, truth, probs, labels)` is called for every frame (the report's
    pictures); `metrics`: an empty accumulator to fill (its counts can then be pooled with
    others, as the out-of-fold scores are).
    """
    predictor = Predictor.from_run(run_dir, device, tta=tta, threshold=threshold,
                                   min_area=min_area)
    if split is None:
        split = default_split(predictor.cfg, data_dir) if data_dir else "val"
    scores = evaluate_predictor(predictor, data_dir, split, batch_size, progress, negatives,
                                rows, on_frame, metrics)
    given = threshold is not None or min_area is not None
    return {"split": split, "tta": tta, **scores,
            "operating_point": "given" if given else "calibrated" if predictor.point
            else "default"}


def evaluate_predictor(predictor: Predictor, data_dir, split: str | None = None,
                       batch_size: int = 16,
                       progress: bool = True, negatives: list[str] = (),
                       rows: list | None = None, on_frame=None,
                       metrics: SegmentationMetrics | None = None) -> dict:
    """The scores of `evaluate` for any Predictor (e.g. one running an ONNX model)."""
    cfg = predictor.cfg
    if split is None:
        split = default_split(cfg, data_dir) if data_dir else "val"
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
    columns = field_columns(field)
    literature = {}  # bare mDice / mIoU name only the literature's values (core.metric_names)
    if columns is not None and cfg.num_classes == 2:
        literature = {"mDice": columns["mDice"], "mIoU": columns["mIoU"]}
    return {"split": split, "images_scored": len(frames),
            "images_total": images_total(cfg, data_dir, list(negatives)),
            **literature, **pixel, **frame_summary(frames), "field": columns,
            "threshold": predictor.threshold, "min_area": predictor.min_area}


def field_columns(field: FieldMetrics) -> dict | None:
    """The papers' columns (see evaluation.field_metrics), None without a frame to score."""
    if not field.count:
        return None
    return {k: v for k, v in field.results().items() if k != "curves"}
