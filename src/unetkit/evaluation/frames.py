"""The frames `evaluate`, `calibrate` and `report` score: a data set's split plus negative frames,
predicted one batch at a time at each image's own size."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unetkit.data.folders import DataError, Item
from unetkit.data.negatives import folder_items, negative_splits
from unetkit.data.pairs import load_pair, problems_error
from unetkit.data.splits import resolve_split
from unetkit.evaluation.metrics import SegmentationMetrics
from unetkit.inference.detection import frame_score, is_detected
from unetkit.io.budget import ImageError
from unetkit.io.images import MaskDecoder, check_pixel_budget, pixel_batches


def same_folder(a, b) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def default_split(cfg, data_dir) -> str:
    """The split scored when none is given: the run's held-out `val` split on its own training
    data; every image (`all`) of any other folder, which the model never saw: scoring a seeded
    share of it would report a sample as the data set's score."""
    return "val" if same_folder(data_dir, cfg.data.root) else "all"


def images_total(cfg, data_dir, negatives: list[str] = ()) -> int:
    """How many frames the scored split was taken from: every pair of `data_dir` (and, when it
    is the run's data folder, its own negative frames) plus the `negatives` folders."""
    own = []
    if data_dir and same_folder(data_dir, cfg.data.root):
        own = [it for part in negative_splits(Path(data_dir), cfg.data).values() for it in part]
    items = scoring_items(cfg, data_dir, "all", negatives) if data_dir or negatives else []
    return len({it.image.resolve() for it in items + own})


def scoring_items(cfg, data_dir, split: str = "val", negatives: list[str] = ()) -> list[Item]:
    """The frames to score: `split` of `data_dir` (read with the run's data settings), the
    run's own negative frames of that split when `data_dir` is the run's data folder, and every
    image of each folder in `negatives` (frames without foreground)."""
    items = resolve_split(cfg, Path(data_dir), split) if data_dir else []
    # the folders --negatives may not repeat (the run's own negative frames may: counted once)
    data_folders = {it.image.parent.resolve() for it in items} | (
        {Path(data_dir).resolve()} if data_dir else set())
    if data_dir and split in ("train", "val", "test") and same_folder(data_dir, cfg.data.root):
        items += negative_splits(Path(data_dir), cfg.data)[split]
    for folder in negatives:
        if Path(folder).resolve() in data_folders:
            raise DataError(f"{folder}: the images of --data {data_dir} given as negatives too; "
                            "--negatives names another folder, of frames without foreground")
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
    frame without a mask file has an all-background truth.

    Every pair is checked as `check-data` checks it (readable, within the pixel budget, a mask
    of its image's size whose values fit the declared encoding). A bad pair is never scored:
    the problems of all pairs are raised together as one `DataError` at the end. Batches are
    formed by pixels (see `images.pixel_batches`), image sizes read from the headers first.
    """
    problems: list[str] = []
    sizes: list[tuple[int, int]] = []
    for it in items:  # headers only: an image over the pixel budget fails before any work
        try:
            sizes.append(check_pixel_budget(it.image))
        except ImageError as exc:
            problems.append(str(exc))
            sizes.append((0, 0))  # not read below
    bar = tqdm(total=len(items), desc=desc, unit="image", disable=not progress)
    for batch in pixel_batches(sizes, batch_size):
        pairs = []
        for i in (i for i in batch if sizes[i] != (0, 0)):
            image, mask, found = load_pair(items[i], decoder, predictor.channels)
            problems += found
            if image is not None:
                truth = mask if mask is not None else np.zeros(image.shape[:2], np.uint8)
                pairs.append((items[i], image, truth))
        if pairs and not problems:  # after a problem: only checked, so all are listed at once
            probs = predictor.probabilities([image for _, image, _ in pairs])
            for (it, image, truth), p in zip(pairs, probs, strict=True):
                yield it, image, truth, p
        bar.update(len(batch))
    bar.close()
    if problems:
        folders = [str(it.image.parent.resolve()) for it in items]  # relative and absolute
        raise problems_error(os.path.commonpath(folders), problems)


def frame_row(name: str, truth: np.ndarray, labels: np.ndarray, probs, num_classes: int,
              min_area: float, ignore_index: int | None = None) -> dict:
    """One frame's scores: positive (truth has foreground), detected, score, Dice and IoU
    (mean over foreground classes, empty-mask convention of `metrics`), areas as fractions."""
    m = SegmentationMetrics(num_classes, ignore_index=ignore_index)
    m.update(torch.from_numpy(labels)[None], torch.from_numpy(truth)[None])
    s = m.compute()
    return {"name": name, "positive": bool((truth > 0).any()),
            "detected": is_detected(labels, min_area), "score": frame_score(probs),
            "dice": s["mDice_point"], "iou": s["mIoU_point"],
            "true_area": float((truth > 0).mean()),
            "predicted_area": float((labels > 0).mean())}
