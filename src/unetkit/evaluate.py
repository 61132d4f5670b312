"""Evaluation of a trained model on a data folder, at each image's own size."""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from .data import resolve_split
from .images import MaskDecoder, read_mask
from .metrics import SegmentationMetrics
from .predict import Predictor


def evaluate(run_dir, data_dir, split: str = "val", tta: bool = False, batch_size: int = 16,
             device: str | None = None, progress: bool = True) -> dict:
    """Scores of the run's model on one split of `data_dir` (see `metrics` for definitions).

    The split is resolved with the run's own data settings (layout, mask encoding, split files
    or seed), so `--split val` is the run's validation set. Predictions are compared with the
    masks at full resolution, not at the training size.
    """
    predictor = Predictor.from_run(run_dir, device, tta=tta)
    cfg = predictor.cfg
    items = resolve_split(cfg, Path(data_dir), split)
    decoder = MaskDecoder.from_config(cfg)
    metrics = SegmentationMetrics(cfg.num_classes, cfg.data.classes, cfg.data.ignore_index)
    bar = tqdm(total=len(items), desc=f"evaluating {split}", unit="image", disable=not progress)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        images = [predictor.read(it.image) for it in chunk]
        for it, pred in zip(chunk, predictor.predict(images), strict=False):
            truth = torch.from_numpy(read_mask(it.mask, decoder))
            metrics.update(torch.from_numpy(pred)[None], truth[None])
        bar.update(len(chunk))
    bar.close()
    return {"split": split, "tta": tta, **metrics.compute()}
