"""Data sets as folders: the errors, items and file listings every data module shares.

A data set is a folder of images and masks that pair by file stem (any extension, an optional
mask suffix), or a CSV list of pairs; `layouts` finds where they are and pairs them. Each image
is decoded and resized once per run (or once ever, with `data.cache_dir`): training then draws
batches from uint8 arrays, never from JPEG files.
"""

from __future__ import annotations

from pathlib import Path

from unetkit.data.layouts import find_layout
from unetkit.data.layouts import pair_items as _pair_items
from unetkit.data.listing import (  # noqa: F401 - the names every data user imports from here
    LAYOUTS,
    DataError,
    Item,
    Problem,
    list_images,
    problem,
    read_stems,
)


def resolve_layout(root: Path, data_cfg) -> tuple[Path, Path, str]:
    """(images folder, masks folder, mask suffix) of a data folder, declared or detected."""
    layout = find_layout(root, data_cfg)
    return layout.images, layout.masks, layout.suffix


def pair_items(root: Path, data_cfg, require_masks: bool | None = None
               ) -> tuple[list[Item], list[str]]:
    """The image/mask pairs of a data set and the problems found (see `layouts.pair_items`)."""
    return _pair_items(root, data_cfg, require_masks)
