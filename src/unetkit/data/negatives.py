"""Negative frames: images in which every pixel is background, as first-class training data.

A polyp model trained only on frames that all show a polyp learns that there always is one. A
data set can therefore name folders of negative images (images only, no masks), e.g.

    data:
      negatives: [polyp-free/images]   # relative to the data root, or to the folder holding it
      negative_fraction: 0.25          # a quarter of every training batch is a negative frame
      negative_val_fraction: 0.2       # held out, for validation and `unetkit calibrate`

and, with `data.missing_masks: negative`, an image of the data set itself that has no mask file
is a negative frame too. Negatives are decoded, resized, cached and augmented like every other
image; their mask is all background (class 0), for binary and multi-class runs alike. They are
split by a seeded random split of their own (`data.split.seed`), so a run's validation negatives
are always the same images. A frame is "negative" wherever its mask has no foreground pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unetkit.core.text import plural
from unetkit.data.folders import DataError, Item, list_images
from unetkit.data.splits import random_split

# The allowed values of data.missing_masks: an image without a mask file is a problem (error) or
# a negative frame (negative).


def negative_folders(root: Path, data_cfg) -> list[Path]:
    """The folders named by data.negatives, relative to the data root or its parent folder."""
    folders = []
    for name in data_cfg.negatives:
        path = Path(name).expanduser()
        candidates = [path] if path.is_absolute() else [root / path, root.parent / path]
        found = next((c for c in candidates if c.is_dir()), None)
        if found is None:
            tried = " or ".join(str(c) for c in candidates)
            raise DataError(f"data.negatives: no folder {tried}; give a folder of images without "
                            "a polyp (or other foreground), absolute or relative to the data root")
        folders.append(found)
    return folders


def folder_label(folder: Path) -> str:
    """A negatives folder's short name: polyp-free/images -> polyp-free."""
    return folder.parent.name if folder.name in ("images", "image") else folder.name


def folder_items(folder: Path) -> list[Item]:
    """Every image of a folder as a negative item (no mask). Names carry the folder's name so
    they never collide with the data set's own stems (polyp-free/images/1.jpg -> polyp-free_1)."""
    label = folder_label(folder)
    images = list_images(folder)
    if not images:
        raise DataError(f"{folder}: no images (.jpg, .png, ...) in this negatives folder")
    return [Item(f"{label}_{stem}", path, None) for stem, path in images.items()]


def negative_splits(root: Path, data_cfg) -> dict[str, list[Item]]:
    """{'train', 'val', 'test'} -> the negative items of data.negatives, seeded-randomly split."""
    items = [it for folder in negative_folders(root, data_cfg) for it in folder_items(folder)]
    out: dict[str, list[Item]] = {"train": [], "val": [], "test": []}
    if not items:
        return out
    if data_cfg.negative_val_fraction == 0:
        out["train"] = items
        return out
    parts = random_split(items, data_cfg.negative_val_fraction, 0.0, data_cfg.split.seed)
    out.update(train=parts["train"], val=parts["val"])
    return out


def add_negatives(splits: dict[str, list[Item]], root: Path, data_cfg,
                  parts: tuple[str, ...] = ("train", "val", "test")) -> dict[str, list[Item]]:
    """The data set's splits with the negative folders' images added to the named parts."""
    extra = negative_splits(root, data_cfg)
    return {name: items + (extra[name] if name in parts else []) for name, items in splits.items()}


def check_negatives(root: Path, cfg, problems: list[str], progress: bool = False) -> str:
    """What `check-data` says of negative frames: how many, where. Unreadable negative images
    and missing folders are added to `problems`."""
    from unetkit.data.folders import pair_items
    from unetkit.data.pairs import check_items
    from unetkit.io.images import MaskDecoder

    parts = []
    if cfg.data.missing_masks == "negative":
        try:
            n = sum(it.mask is None for it in pair_items(root, cfg.data)[0])
            parts.append(f"{plural(n, 'image')} without a mask (negative frames)")
        except DataError:
            pass  # check_data has reported it
    try:
        folders = negative_folders(root, cfg.data)
        for folder in folders:
            items = folder_items(folder)
            problems += check_items(items, MaskDecoder.from_config(cfg), cfg.model.in_channels,
                                    progress)
            parts.append(f"{len(items)} negative frames in {folder}")
    except DataError as exc:
        problems.append(str(exc))
    return "; ".join(parts)


def negative_mask(masks: np.ndarray) -> np.ndarray:
    """(N,) bool: the frames (N, H, W) whose mask has no foreground pixel."""
    return np.asarray(masks).reshape(len(masks), -1).max(1) == 0 if len(masks) else \
        np.zeros(0, bool)


class BatchPlan:
    """The order of training samples for one epoch.

    Without a fraction (None) it is a plain shuffle of every sample, negatives included as they
    come. With `fraction` f, every batch holds round(f * batch) negative frames and the rest
    positive ones: an epoch is one pass over the positive frames, and the negative frames are
    drawn in a shuffled cycle (each seen once before any is seen twice), so a small negative
    set is repeated and a large one is sampled.
    """

    def __init__(self, negative: np.ndarray, batch_size: int, fraction: float | None):
        self.n = len(negative)
        self.pos = torch.from_numpy(np.flatnonzero(~negative))
        self.neg = torch.from_numpy(np.flatnonzero(negative))
        self.batch_size = batch_size
        self.per_batch = 0
        if fraction is not None and fraction > 0:
            if len(self.neg) == 0:
                raise DataError("data.negative_fraction is set but the training data hold no "
                                "negative frame; name folders in data.negatives")
            self.per_batch = min(batch_size - 1, max(1, round(fraction * batch_size)))
        positives = batch_size - self.per_batch
        if self.per_batch and len(self.pos) < positives:
            raise DataError(f"{len(self.pos)} positive training frames are too few for batches "
                            f"of {positives}; lower train.batch_size")
        self.steps = len(self.pos) // positives if self.per_batch else self.n // batch_size

    def order(self, gen: torch.Generator) -> torch.Tensor:
        """Sample indices for one epoch: steps * batch_size of them, batch after batch."""
        if not self.per_batch:
            return torch.randperm(self.n, generator=gen)
        positives = self.batch_size - self.per_batch
        pos = self.pos[torch.randperm(len(self.pos), generator=gen)][: self.steps * positives]
        k = self.steps * self.per_batch
        cycles = [self.neg[torch.randperm(len(self.neg), generator=gen)]
                  for _ in range(-(-k // len(self.neg)))]
        neg = torch.cat(cycles)[:k]
        batches = torch.cat([pos.view(self.steps, positives),
                             neg.view(self.steps, self.per_batch)], 1)
        return batches.flatten()
