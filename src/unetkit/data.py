"""Data sets as folders: layouts, image/mask pairing, splits, integrity checks and the cache.

A data set is a folder with a sub-folder of images and one of masks that pair by file stem, any
extension. Well-known layouts are recognised; any other is declared with `data.images` and
`data.masks`. Each image is decoded and resized once per run (or once ever, with
`data.cache_dir`): training then draws batches from uint8 arrays, never from JPEG files.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .files import atomic_write
from .images import IMAGE_EXTENSIONS, ImageError, MaskDecoder, open_image, resize_mask, to_array
from .preprocess import DECODE, RESIZE, Preprocess

# layout name -> (images folder, masks folder, mask stem suffix); detection tries them in order.
LAYOUTS = {
    "kvasir": ("images", "masks", ""),
    "neopolyp": ("train", "train_gt", ""),
    "carvana": ("train", "train_masks", "_mask"),
    "isbi": ("image", "label", ""),
}
# The allowed values of data.layout: detect one of LAYOUTS, name one, or declare the folders.
LAYOUT_NAMES = ("auto", *LAYOUTS, "custom")


class DataError(ValueError):
    """A data folder that cannot be used as configured; the message says how to fix it."""


@dataclass
class Item:
    name: str  # the image's stem
    image: Path
    mask: Path | None


def resolve_layout(root: Path, data_cfg) -> tuple[Path, Path, str]:
    """(images folder, masks folder, mask suffix) of a data folder, declared or detected."""
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder")
    if data_cfg.images or data_cfg.masks:
        if not (data_cfg.images and data_cfg.masks):
            raise DataError("give both data.images and data.masks (the sub-folders of images "
                            "and of masks)")
        return root / data_cfg.images, root / data_cfg.masks, data_cfg.mask_suffix
    if data_cfg.layout not in ("auto", "custom"):
        images, masks, suffix = LAYOUTS[data_cfg.layout]
        return root / images, root / masks, data_cfg.mask_suffix or suffix
    for images, masks, suffix in LAYOUTS.values():
        if (root / images).is_dir() and (root / masks).is_dir():
            return root / images, root / masks, data_cfg.mask_suffix or suffix
    known = "; ".join(f"{i}/ + {m}/" for i, m, _ in LAYOUTS.values())
    raise DataError(f"{root}: no known layout ({known}); name the sub-folders with "
                    "--set data.images=DIR --set data.masks=DIR")


def list_images(folder: Path) -> dict[str, Path]:
    """stem -> path for the image files of a folder (other files are not images and are skipped)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        hidden = path.name.startswith(".")
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not hidden:
            if path.stem in found:
                raise DataError(f"{path}: two files share the stem '{path.stem}' "
                                f"({found[path.stem].name}); keep one")
            found[path.stem] = path
    return found


def pair_items(root: Path, data_cfg, require_masks: bool | None = None
               ) -> tuple[list[Item], list[str]]:
    """Pair images with masks by stem. Returns the pairs and the problems found (unpaired files).
    An image without a mask is a problem unless data.missing_masks is "negative" (mask None)."""
    if require_masks is None:
        require_masks = getattr(data_cfg, "missing_masks", "error") != "negative"
    image_dir, mask_dir, suffix = resolve_layout(root, data_cfg)
    images = list_images(image_dir)
    masks = list_images(mask_dir) if mask_dir.is_dir() else {}
    problems = []
    if not images:
        problems.append(f"{image_dir}: no images (.jpg, .png, ...) in this folder")
    items = []
    for stem, path in images.items():
        mask = masks.get(stem + suffix)
        if mask is None and require_masks:
            problems.append(f"{path}: no mask '{stem + suffix}.*' in {mask_dir}; add it or "
                            "remove the image")
            continue
        items.append(Item(stem, path, mask))
    for stem, path in masks.items():
        if not stem.endswith(suffix) or stem[: len(stem) - len(suffix)] not in images:
            image_stem = stem[: len(stem) - len(suffix)] if suffix else stem
            problems.append(f"{path}: mask with no image '{image_stem}.*' "
                            f"in {image_dir}; add the image or remove the mask")
    return items, problems


def read_stems(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(f"{path}: no such split file (one image stem per line)")
    return [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]


def split_items(items: list[Item], root: Path, split_cfg) -> dict[str, list[Item]]:
    """{'train', 'val', 'test'} -> items, from split files or a seeded random (group) split."""
    by_name = {it.name: it for it in items}

    def from_file(name: str) -> list[Item]:
        path = Path(name) if Path(name).is_absolute() else root / name
        stems = read_stems(path)
        missing = [s for s in stems if s not in by_name]
        if missing:
            raise DataError(f"{path}: {len(missing)} stems have no image+mask pair in {root} "
                            f"(first: {missing[:3]}); run `unetkit check-data {root}`")
        return [by_name[s] for s in stems]

    if split_cfg.train or split_cfg.val:
        if not (split_cfg.train and split_cfg.val):
            raise DataError("give both data.split.train and data.split.val, or neither")
        train, val = from_file(split_cfg.train), from_file(split_cfg.val)
        overlap = {i.name for i in train} & {i.name for i in val}
        if overlap:
            raise DataError(f"{split_cfg.val}: {len(overlap)} stems are also in the training "
                            f"split (first: {sorted(overlap)[:3]})")
        used = {i.name for i in train + val}
        return {"train": train, "val": val, "test": [i for i in items if i.name not in used]}
    table = None
    if split_cfg.group_table and (root / split_cfg.group_table).exists():
        table = read_group_table(root / split_cfg.group_table, split_cfg.group_column)
    return random_split(items, split_cfg.val_fraction, split_cfg.test_fraction, split_cfg.seed,
                        split_cfg.group_by, table)


def read_group_table(path: Path, column: str) -> dict[str, str]:
    """{first column's value: `column`'s value} from a CSV, e.g. Carvana's metadata.csv id ->
    make."""
    import csv

    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or column not in reader.fieldnames:
            raise DataError(f"{path}: no column '{column}' (columns: {reader.fieldnames}); fix "
                            "data.split.group_column")
        key = reader.fieldnames[0]
        return {row[key]: row[column] for row in reader if row[column] not in (None, "")}


def group_items(items: list[Item], group_by: str | None = None,
                table: dict[str, str] | None = None) -> dict[str, list[Item]]:
    """{group: its items, by name}: `group_by`'s first regex group, mapped through `table`
    (a name the regex does not match is its own group)."""
    groups: dict[str, list[Item]] = {}
    for it in sorted(items, key=lambda i: i.name):
        key = it.name
        if group_by:
            match = re.search(group_by, it.name)
            key = match.group(1) if match else it.name
        if table:
            key = table.get(key, key)  # a car missing from the table stays its own group
        groups.setdefault(key, []).append(it)
    return groups


def random_split(items: list[Item], val_fraction: float, test_fraction: float, seed: int,
                 group_by: str | None = None, table: dict[str, str] | None = None
                 ) -> dict[str, list[Item]]:
    """A seeded random split. With `group_by` (a regex whose first group names the group, e.g.
    Carvana's car id) whole groups go to one side, so no group appears in two splits. `table`
    maps those groups to larger ones (Carvana: car id -> make), which are then kept whole."""
    groups = group_items(items, group_by, table)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n = len(keys)
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n_val + n_test >= n:
        raise DataError(f"{n} items (or groups) are too few to split off {val_fraction:.0%} "
                        f"validation and {test_fraction:.0%} test data")
    pick = lambda ks: [it for k in ks for it in groups[k]]  # noqa: E731
    return {"val": pick(keys[:n_val]), "test": pick(keys[n_val:n_val + n_test]),
            "train": pick(keys[n_val + n_test:])}


def resolve_split(cfg, root: Path, name: str) -> list[Item]:
    """The items of one split by name (train, val, test, all) or a file of stems."""
    items, problems = pair_items(root, cfg.data)
    if not items:
        raise DataError(problems[0] if problems else f"{root}: no image/mask pairs")
    if name == "all":
        return items
    if name in ("train", "val", "test"):
        chosen = split_items(items, root, cfg.data.split)[name]
        if not chosen:
            raise DataError(f"the '{name}' split of {root} is empty")
        return chosen
    by_name = {it.name: it for it in items}
    path = Path(name)
    stems = read_stems(path if path.is_absolute() or path.exists() else root / name)
    missing = [s for s in stems if s not in by_name]
    if missing:
        raise DataError(f"{name}: stems with no image+mask pair in {root}: {missing[:3]}")
    return [by_name[s] for s in stems]


# ---------------------------------------------------------------------------------------------
# Integrity checks.


def load_pair(item: Item, decoder: MaskDecoder, channels: int = 3
              ) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """Decode one pair: (image (H, W, C) uint8, mask (H, W) class indices, problems).

    The image is decoded as `Preprocess.decode` decodes it (`images.read_image`). Problems
    (unreadable files, a mask of another size than its image, mask values that do not fit the
    declared encoding) are returned, not raised, so a caller can list them all; the arrays are
    then None.
    """
    try:
        img = open_image(item.image)
        image = to_array(img, channels)
        if item.mask is None:
            return image, None, []
        mimg = open_image(item.mask)
    except ImageError as exc:
        return None, None, [str(exc)]
    if mimg.size != img.size:
        return None, None, [f"{item.mask}: mask is {mimg.width}x{mimg.height} but its image is "
                            f"{img.width}x{img.height}; re-export the mask at the image's size"]
    mask = decoder.decode(mimg)
    problems = [f"{item.mask}: {p}" for p in decoder.problems(mimg, mask)]
    return (None, None, problems) if problems else (image, mask, [])


def check_items(items: list[Item], decoder: MaskDecoder, channels: int = 3,
                progress: bool = True) -> list[str]:
    """Every problem with every pair, in one pass: unreadable files, size mismatches, odd masks."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = list(tqdm(pool.map(lambda it: load_pair(it, decoder, channels)[2], items),
                            total=len(items), desc="checking", disable=not progress, leave=False))
    return [p for r in results for p in r]


def problems_error(where: str, problems: list[str]) -> DataError:
    """One error listing the first problems found, with the command that lists them all."""
    shown = "\n  ".join(problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    return DataError(f"{where}: {len(problems)} problems; fix them (or see all with `unetkit "
                     f"check-data {where}`):\n  {shown}{more}")


def check_data(root: Path, cfg, progress: bool = True) -> tuple[int, list[str]]:
    """(pairs found, every problem) for a data folder under a configuration."""
    try:
        items, problems = pair_items(root, cfg.data)
    except DataError as exc:
        return 0, [str(exc)]
    problems += check_items(items, MaskDecoder.from_config(cfg), cfg.model.in_channels, progress)
    return len(items), problems


# ---------------------------------------------------------------------------------------------
# The decoded, resized arrays a run trains on.


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
                progress: bool = True) -> ArrayData:
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
        raise problems_error(os.path.commonpath([str(it.image.parent.parent) for it in items]),
                             problems)
    images = np.stack([p[0] for p in pairs]) if pairs else np.zeros((0, *size, channels), np.uint8)
    masks = np.stack([p[1] for p in pairs]) if pairs else np.zeros((0, *size), np.uint8)
    if cache_dir:
        folder.mkdir(parents=True, exist_ok=True)
        for file, arr in ((img_file, images), (mask_file, masks)):
            atomic_write(file, lambda f, a=arr: np.save(f, a))
    return ArrayData(images, masks, names)


# ---------------------------------------------------------------------------------------------
# A run's training and validation arrays, and where they live during training.


def prepare_data(cfg, preprocess: Preprocess, progress: bool = True
                 ) -> tuple[ArrayData, ArrayData]:
    """The training and validation arrays, decoded and resized by `preprocess`."""
    if not cfg.data.root:
        raise DataError("no data: give --data DIR (or data.root in the config)")
    root = Path(cfg.data.root)
    items, problems = pair_items(root, cfg.data)
    if problems:
        raise problems_error(str(root), problems)
    from .negatives import add_negatives

    # Negative frames join the training data only: the validation scores printed while training
    # (and train.monitor) are pixel scores on frames with foreground; `unetkit evaluate` and
    # `unetkit calibrate` score the held-out negatives frame by frame.
    splits = add_negatives(split_items(items, root, cfg.data.split), root, cfg.data, ("train",))
    if len(splits["train"]) < 1 or len(splits["val"]) < 1:
        raise DataError(f"{root}: the split leaves {len(splits['train'])} training and "
                        f"{len(splits['val'])} validation images; both need at least one")
    decoder, cache = MaskDecoder.from_config(cfg), cfg.data.cache_dir
    train = load_arrays(splits["train"], preprocess, decoder, cache, "decoding train", progress)
    val = load_arrays(splits["val"], preprocess, decoder, cache, "decoding val", progress)
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
