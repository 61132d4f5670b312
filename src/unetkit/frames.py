"""The frames `evaluate`, `calibrate` and `report` score: a data set's split plus negative frames,
predicted one batch at a time at each image's own size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import DataError, Item, resolve_split
from .detection import frame_score, is_detected
from .images import MaskDecoder, read_mask
from .metrics import SegmentationMetrics
from .negatives import folder_items, negative_splits


def same_folder(a, b) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def scoring_items(cfg, data_dir, split: str = "val", negatives: list[str] = ()) -> list[Item]:
    """The frames to score: `split` of `data_dir` (read with the run's data settings), the
    run's own negative frames of that split when `data_dir` is the run's data folder, and every
    image of each folder in `negatives` (frames without foreground)."""
    items = resolve_split(cfg, Path(data_dir), split) if data_dir else []
    if data_dir and split in ("train", "val", "test") and same_folder(data_dir, cfg.data.root):
        items += negative_splits(Path(data_dir), cfg.data)[split]
    for folder in negatives:
        items += folder_items(Path(folder))
    seen: set[Path] = set()  # a file named twice (the run's negatives and --negatives) counts once
    items = [it for it in items if not (it.image.resolve() in seen or seen.add(it.image.resolve()))]
    if not items:
        raise DataError("no frames to score: give --data DIR and/or --negatives DIR")
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise DataError("two frames share a name; score those folders separately")
    return items


def predicted_frames(predictor, items: list[Item], decoder: MaskDecoder, batch_size: int = 16,
                     progress: bool = True, desc: str = "scoring"
                     ) -> Iterator[tuple[Item, np.ndarray, np.ndarray, torch.Tensor]]:
    """(item, image, truth (H, W) class indices, (K, H, W) probabilities) for every frame; a
    frame without a mask file has an all-background truth."""
    bar = tqdm(total=len(items), desc=desc, unit="image", disable=not progress)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        images = [predictor.read(it.image) for it in chunk]
        for it, image, probs in zip(chunk, images, predictor.probabilities(images),
                                   strict=True):
            truth = read_mask(it.mask, decoder) if it.mask is not None else \
                np.zeros(image.shape[:2], np.uint8)
            if truth.shape != image.shape[:2]:
                raise DataError(f"{it.mask}: mask is {truth.shape[1]}x{truth.shape[0]} but its "
                                f"image is {image.shape[1]}x{image.shape[0]}")
            yield it, image, truth, probs
        bar.update(len(chunk))
    bar.close()


def frame_row(name: str, truth: np.ndarray, labels: np.ndarray, probs, num_classes: int,
              min_area: float, ignore_index: int | None = None) -> dict:
    """One frame's scores: positive (truth has foreground), detected, score, Dice and IoU
    (mean over foreground classes, empty-mask convention of `metrics`), areas as fractions."""
    m = SegmentationMetrics(num_classes, ignore_index=ignore_index)
    m.update(torch.from_numpy(labels)[None], torch.from_numpy(truth)[None])
    s = m.compute()
    return {"name": name, "positive": bool((truth > 0).any()),
            "detected": is_detected(labels, min_area), "score": frame_score(probs),
            "dice": s["mDice"], "iou": s["mIoU"], "true_area": float((truth > 0).mean()),
            "predicted_area": float((labels > 0).mean())}
