"""The decoded data set: images and masks decoded and resized once into uint8 arrays (cached on
disk by content), the arrays the training loop keeps on its device.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unetkit.core.files import atomic_write
from unetkit.data.folders import DataError, Item, pair_items
from unetkit.data.pairs import load_pair, problems_error
from unetkit.data.preprocess import DECODE, RESIZE, Preprocess
from unetkit.data.splits import split_items
from unetkit.io.images import MaskDecoder, resize_mask


@dataclass
class ArrayData:
    """Images (N, H, W, C) and masks (N, H, W) as uint8 at the training size, with their names."""
    images: np.ndarray
    masks: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def _cache_key(items: list[Item], size: tuple[int, int], channels: int,
               decoder: MaskDecoder) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([size, channels, DECODE, RESIZE, decoder.encoding, decoder.threshold,
                         None if decoder.colors is None else decoder.colors.tolist()]).encode())
    for it in items:
        for p in (it.image, it.mask):
            if p is None:  # a negative frame: no mask file
                continue
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_arrays(items: list[Item], preprocess: Preprocess, decoder: MaskDecoder,
                cache_dir: str | None = None, desc: str = "decoding",
                progress: bool = True, where: str | None = None) -> ArrayData:
    """Decode and resize every pair once, images exactly as `preprocess` does for prediction.
    Bad files stop it with a `DataError` naming them all.

    With `cache_dir`, the arrays are kept there as .npy files keyed by the files' paths, sizes
    and dates and the settings, and memory-mapped by later runs.
    """
    names = [it.name for it in items]
    size, channels = preprocess.size, preprocess.channels
    if cache_dir:
        folder = Path(cache_dir).expanduser()
        key = _cache_key(items, size, channels, decoder)
        img_file, mask_file = folder / f"{key}-images.npy", folder / f"{key}-masks.npy"
        if img_file.exists() and mask_file.exists():
            return ArrayData(np.load(img_file, mmap_mode="r"), np.load(mask_file, mmap_mode="r"),
                             names)

    def load(item: Item) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
        image, mask, problems = load_pair(item, decoder, channels)
        if problems:
            return None, None, problems
        if mask is None:  # a negative frame: every pixel is background
            return preprocess.resize(image), np.zeros(size, np.uint8), []
        return preprocess.resize(image), resize_mask(mask, size), []

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        pairs = list(tqdm(pool.map(load, items), total=len(items), desc=desc,
                          disable=not progress, leave=False))
    problems = [p for _, _, found in pairs for p in found]
    if problems:  # every bad file at once, not one per attempt
        folders = [str(it.image.parent.parent.resolve()) for it in items]  # negatives: absolute
        raise problems_error(where or os.path.commonpath(folders), problems)
    images = np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, *size, channels), np.uint8)
    masks = np.stack([p[1] for p in pairs]) if pairs else np.zeros((0, *size), np.uint8)
    if cache_dir:
        folder.mkdir(parents=True, exist_ok=True)
        for file, arr in ((img_file, images), (mask_file, masks)):
            atomic_write(file, lambda f, a=arr: np.save(f, a))
    return ArrayData(images, masks, names)


def prepare_data(cfg, preprocess: Preprocess, progress: bool = True
                 ) -> tuple[ArrayData, ArrayData]:
    """The training and validation arrays, decoded and resized by `preprocess`."""
    if not cfg.data.root:
        raise DataError("no data: give --data DIR (or data.root in the config)")
    root = Path(cfg.data.root)
    items, problems = pair_items(root, cfg.data)
    if problems:
        raise problems_error(str(root), problems)
    from unetkit.data.negatives import add_negatives

    # Negative frames join the training data only: the validation scores printed while training
    # (and train.monitor) are pixel scores on frames with foreground; `unetkit evaluate` and
    # `unetkit calibrate` score the held-out negatives frame by frame.
    splits = add_negatives(split_items(items, root, cfg.data.split), root, cfg.data, ("train",))
    if len(splits["train"]) < 1 or len(splits["val"]) < 1:
        raise DataError(f"{root}: the split leaves {len(splits['train'])} training and "
                        f"{len(splits['val'])} validation images; both need at least one")
    decoder, cache = MaskDecoder.from_config(cfg), cfg.data.cache_dir
    train = load_arrays(splits["train"], preprocess, decoder, cache, "decoding train", progress,
                        str(root))
    val = load_arrays(splits["val"], preprocess, decoder, cache, "decoding val", progress,
                      str(root))
    return train, val


def device_tensors(data: ArrayData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The uint8 arrays as tensors: on the GPU when they take under a quarter of its free memory
    (then no host-to-device copy happens per step), else in pinned host memory."""
    images, masks = torch.from_numpy(np.ascontiguousarray(data.images)), \
        torch.from_numpy(np.ascontiguousarray(data.masks))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if images.numel() + masks.numel() < free // 4:
            return images.to(device), masks.to(device)
        return images.pin_memory(), masks.pin_memory()
    return images, masks
