"""The contact sheet of `unetkit check-data`: a few pairs as image | decoded mask | overlay, the
mask decoded exactly as training will decode it, so a wrong encoding is seen at a glance (an
all-black mask, a mask of one colour where there should be two)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unetkit.core.files import atomic_write
from unetkit.data.listing import Item
from unetkit.io.budget import ImageError
from unetkit.io.images import MaskDecoder, open_image, resize_image, resize_mask, to_array
from unetkit.io.plots import _fit, _font, class_palette, color_mask, overlay

TILE = 256  # tiles' height in pixels: large enough to see a small polyp or a thin membrane
ROWS = 4


def sheet_rows(items: list[Item], cfg, rows: int = ROWS) -> list[tuple[str, np.ndarray]]:
    """(name, image | decoded mask | overlay) for up to `rows` pairs spread over the data set;
    pairs that cannot be read are skipped (check-data lists them as problems)."""
    from unetkit.data.survey import spread

    decoder = MaskDecoder.from_config(cfg)
    tint = class_palette(cfg.num_classes, cfg.data.class_colors)
    palette = tint  # binary masks without declared colours: white on black, as on disk
    if cfg.num_classes == 2 and not cfg.data.class_colors:
        palette = np.asarray([[0, 0, 0], [255, 255, 255]], np.uint8)
    out = []
    for item in spread([it for it in items if it.mask is not None], rows * 2):
        try:  # decoded as training decodes it, even where check-data doubts the encoding
            img, mimg = open_image(item.image), open_image(item.mask)
        except ImageError:
            continue
        if img.size != mimg.size:
            continue
        image, mask = to_array(img, cfg.model.in_channels), decoder.decode(mimg)
        h, w = image.shape[:2]
        size = (TILE, max(1, min(3 * TILE, round(w * TILE / h))))
        image, mask = resize_image(image, size), resize_mask(mask, size)
        rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
        tiles = [rgb, color_mask(mask, palette), overlay(image, mask, tint)]
        gap = np.full((TILE, 4, 3), 255, np.uint8)
        out.append((item.name, np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], 1)))
        if len(out) == rows:
            break
    return out


def write_sheet(path: Path, items: list[Item], cfg, title: str) -> int:
    """Write the contact sheet PNG (atomically) and return the number of pairs on it. The caller
    has checked the path with `core.files.check_outputs`."""
    rows = sheet_rows(items, cfg)
    if not rows:
        return 0
    font, line = _font(14), 20
    width = max(arr.shape[1] for _, arr in rows)
    canvas = Image.new("RGB", (width, 2 * line + len(rows) * (TILE + line)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    d = cfg.data
    legend = ", ".join(f"{name}" for name in d.classes)
    heading = (f"image | mask decoded as data.mask_encoding={d.mask_encoding} "
               f"(classes {legend}) | overlay")
    draw.text((3, 2), _fit(draw, title, font, width - 6), fill=(0, 0, 0), font=font)
    draw.text((3, 2 + line), _fit(draw, heading, font, width - 6), fill=(60, 60, 60), font=font)
    y = 2 * line
    for name, arr in rows:
        draw.text((3, y + 2), _fit(draw, name, font, width - 6), fill=(60, 60, 60), font=font)
        canvas.paste(Image.fromarray(arr), (0, y + line))
        y += TILE + line
    atomic_write(path, lambda f: canvas.save(f, format="PNG", optimize=True))
    return len(rows)
