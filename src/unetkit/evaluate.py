"""Evaluation of a trained model on a data folder, at each image's own size."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import load_pair, problems_error, resolve_split
from .images import ImageError, MaskDecoder, check_pixel_budget, pixel_batches
from .metrics import SegmentationMetrics
from .predict import Predictor


def evaluate(run_dir, data_dir, split: str = "val", tta: bool = False, batch_size: int = 16,
             device: str | None = None, progress: bool = True,
             metrics: SegmentationMetrics | None = None) -> dict:
    """Scores of the run's model on one split of `data_dir` (see `metrics` for definitions).

    The split is resolved with the run's own data settings (layout, mask encoding, split files
    or seed), so `--split val` is the run's validation set. Predictions are compared with the
    masks at full resolution, not at the training size. `metrics`: an empty accumulator to
    fill (its counts can then be pooled with others, as the out-of-fold scores are).
    """
    predictor = Predictor.from_run(run_dir, device, tta=tta)
    return {"split": split, "tta": tta,
            **evaluate_predictor(predictor, data_dir, split, batch_size, progress, metrics)}


def evaluate_predictor(predictor: Predictor, data_dir, split: str = "val", batch_size: int = 16,
                       progress: bool = True,
                       metrics: SegmentationMetrics | None = None) -> dict:
    """The scores of `evaluate` for any Predictor (e.g. one running an ONNX model)."""
    cfg = predictor.cfg
    items = resolve_split(cfg, Path(data_dir), split)
    decoder = MaskDecoder.from_config(cfg)
    if metrics is None:
        metrics = SegmentationMetrics(cfg.num_classes, cfg.data.classes, cfg.data.ignore_index)
    bar = tqdm(total=len(items), desc=f"evaluating {split}", unit="image", disable=not progress)
    problems: list[str] = []
    sizes: list[tuple[int, int]] = []
    for it in items:  # headers only: an image over the pixel budget fails before any work
        try:
            sizes.append(check_pixel_budget(it.image))
        except ImageError as exc:
            problems.append(str(exc))
            sizes.append((0, 0))  # not read below
    for batch in pixel_batches(sizes, batch_size):
        images, masks = [], []
        for i in (i for i in batch if sizes[i] != (0, 0)):
            # The checks of `check-data`: readable, same size as the image, values that fit
            # the declared encoding. A bad mask is never scored; all are listed at the end.
            image, mask, found = load_pair(items[i], decoder, predictor.channels)
            problems += found
            if image is not None:
                images.append(image)
                masks.append(mask)
        if images and not problems:
            for pred, truth in zip(predictor.predict(images), masks, strict=True):
                metrics.update(torch.from_numpy(pred)[None], torch.from_numpy(truth)[None])
        bar.update(len(batch))
    bar.close()
    if problems:
        raise problems_error(f"{data_dir} ({split} split)", problems)
    return metrics.compute()
