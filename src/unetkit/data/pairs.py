"""Image/mask pairs read and checked: decoding, the size agreement of an image and its mask, and
`check_data`, the integrity report of `unetkit check-data`.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from unetkit.core.text import plural
from unetkit.data.folders import DataError, Item, pair_items
from unetkit.io.budget import ImageError
from unetkit.io.images import MaskDecoder, open_image, to_array


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
    grouped = group_problems(problems)
    shown = "\n  ".join(grouped[:10])
    more = f"\n  ... and {len(grouped) - 10} more" if len(grouped) > 10 else ""
    return DataError(f"{where}: {plural(len(problems), 'problem')}; fix them (or see all with "
                     "`unetkit "
                     f"check-data {where}`):\n  {shown}{more}", fixes(problems))


def fixes(problems: list[str]) -> tuple[str, ...]:
    """The `--set` changes the problems name as their fix, each once, in order."""
    return tuple(dict.fromkeys(f for p in problems for f in getattr(p, "fix", ())))


def check_data(root: Path, cfg, progress: bool = True) -> tuple[int, list[str]]:
    """(pairs found, every problem) for a data folder under a configuration."""
    try:
        items, problems = pair_items(root, cfg.data)
    except DataError as exc:
        return 0, [str(exc)]
    problems += check_items(items, MaskDecoder.from_config(cfg), cfg.model.in_channels, progress)
    return len(items), problems


def group_problems(problems: list[str], examples: int = 3) -> list[str]:
    """One line per kind of problem: how many files, the first one's message, and `examples`
    files (kinds of at most `examples` problems are listed one by one). Problems of one kind
    differ only in file names, quoted names and numbers."""
    groups: dict[str, list[str]] = {}
    for p in problems:
        path, sep, message = p.partition(": ")
        if not sep or "/" not in path and "\\" not in path:
            path, message = "", p
        key = re.sub(r"'[^']*'|\d+(\.\d+)?", "#", message.replace(path, ""))
        groups.setdefault(key, []).append(p)
    lines = []
    for found in groups.values():
        if len(found) <= examples:  # as short listed one by one, with their whole paths
            lines += found
            continue
        names = [Path(p.partition(": ")[0]).name for p in found[:examples]]
        message = found[0].partition(": ")[2]
        more = ", ..." if len(found) > examples else ""
        lines.append(f"{len(found)} files: {message} (e.g. {', '.join(names)}{more})")
    return lines
