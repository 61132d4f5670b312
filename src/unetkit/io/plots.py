"""Pictures: colour masks, overlays, sample panels (image | truth | prediction) and curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unetkit.core.files import atomic_write

# Colours for classes 1, 2, ... when a data set declares none (class 0, background, is black).
DEFAULT_COLORS = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255],
                  [0, 255, 255], [255, 128, 0], [128, 0, 255], [128, 128, 128]]


def class_palette(num_classes: int, colors: list[list[int]] | None = None) -> np.ndarray:
    if colors:
        return np.asarray(colors, dtype=np.uint8)
    reps = DEFAULT_COLORS * (num_classes // len(DEFAULT_COLORS) + 1)
    return np.asarray(reps[:num_classes], dtype=np.uint8)


def color_mask(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours, through a palette image (Pillow's C
    loop: several times faster than NumPy's fancy indexing on large masks)."""
    indices = np.minimum(labels, len(palette) - 1).astype(np.uint8)
    img = Image.fromarray(indices, mode="L")
    img.putpalette(palette.astype(np.uint8).reshape(-1).tolist())
    return np.asarray(img.convert("RGB"))


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray,
            alpha: float = 0.45) -> np.ndarray:
    """Blend the colours of the foreground classes over an (H, W, 3) or (H, W, 1) uint8 image."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    # Pillow blends in 8-bit integers: no float copies of a full-size image (pixel budget).
    base = Image.fromarray(np.ascontiguousarray(rgb))
    blended = Image.blend(base, Image.fromarray(color_mask(labels, palette)), alpha)
    foreground = Image.fromarray((labels > 0).astype(np.uint8) * 255)
    return np.asarray(Image.composite(blended, base, foreground))


def save_png(path: str | Path, array: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write a PNG atomically; with `palette`, as a palette PNG of class indices."""
    img = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)
    if palette is not None:
        img = img.convert("P")
        flat = palette.reshape(-1).tolist()
        img.putpalette(flat + [0] * (768 - len(flat)))
    atomic_write(path, lambda f: img.save(f, format="PNG"))


def panel(image: np.ndarray, truth: np.ndarray | None, pred: np.ndarray, palette: np.ndarray,
          title: str = "") -> np.ndarray:
    """image | truth | prediction, side by side with captions."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    tiles = [("image", rgb)]
    if truth is not None:
        tiles.append(("truth", overlay(image, truth, palette)))
    tiles.append(("prediction", overlay(image, pred, palette)))
    h, w = rgb.shape[:2]
    gap, top = 4, 18
    canvas = Image.new("RGB", (len(tiles) * (w + gap) - gap, h + top), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (name, tile) in enumerate(tiles):
        x = i * (w + gap)
        canvas.paste(Image.fromarray(tile), (x, top))
        draw.text((x + 3, 3), f"{name}  {title}" if i == 0 and title else name, fill=(0, 0, 0))
    return np.asarray(canvas)


def plot_curves(rows: list[dict], path: str | Path) -> None:
    """Training and validation loss, and validation mDice / mIoU, by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [r["train_loss"] for r in rows], label="train")
    ax1.plot(epochs, [r["val_loss"] for r in rows], label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax1.legend()
    for key in ("val_mDice", "val_mIoU"):
        ax2.plot(epochs, [r[key] for r in rows], label=key[4:])
    ax2.set(xlabel="epoch", ylabel="score", title="Validation", ylim=(0, 1))
    ax2.legend()
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
