"""Data sets as folders: layouts, image/mask pairing, splits, integrity checks and the cache.

A data set is a folder with a sub-folder of images and one of masks that pair by file stem, any
extension. Well-known layouts are recognised; any other is declared with `data.images` and
`data.masks`. Each image is decoded and resized once per run (or once ever, with
`data.cache_dir`): training then draws batches from uint8 arrays, never from JPEG files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unetkit.io.images import IMAGE_EXTENSIONS

# layout name -> (images folder, masks folder, mask stem suffix); detection tries them in order.
LAYOUTS = {
    "kvasir": ("images", "masks", ""),
    "neopolyp": ("train", "train_gt", ""),
    "carvana": ("train", "train_masks", "_mask"),
    "isbi": ("image", "label", ""),
}


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
    if not found:
        _refuse_nested_images(folder)
    return found


def _refuse_nested_images(folder: Path) -> None:
    """A folder with no images of its own whose subfolders hold some: one level is read, so
    say which folders to give instead of reading nothing."""
    nested = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")
              and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in d.iterdir() if f.is_file())]
    if nested:
        names = ", ".join(f"{d.name}/" for d in nested[:5]) + (" ..." if len(nested) > 5 else "")
        raise DataError(f"{folder}: no images in the folder itself, but its subfolders hold some "
                        f"({names}); unetkit reads one folder level: give those folders")


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












# ---------------------------------------------------------------------------------------------
# Integrity checks.










# ---------------------------------------------------------------------------------------------
# The decoded, resized arrays a run trains on.








# ---------------------------------------------------------------------------------------------
# A run's training and validation arrays, and where they live during training.
