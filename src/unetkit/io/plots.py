"""Pictures: colour masks, overlays (tint or outline), probability colour maps, sample panels
(image | truth | prediction) and curves. Figures use matplotlib's `Figure` API, never pyplot:
plotting changes no state of the user's session (its backend, its open figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unetkit.core.files import atomic_write
from unetkit.io.images import resize_image, resize_mask

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


def outline(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels where a class meets another (4-neighbours, both sides: 2 pixels thick), grown by
    `width - 1` more pixels each side."""
    edge = np.zeros(labels.shape, bool)
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[1:] != labels[:-1]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    for _ in range(width - 1):
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray,
            alpha: float = 0.45, style: str = "tint") -> np.ndarray:
    """The prediction over an (H, W, 3) or (H, W, 1) uint8 image: its classes' colours blended
    in (`tint`), or drawn as outlines (`outline`, about 1/250 of the image's side thick, so
    that a large photo's outline is still seen)."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    if style == "outline":
        out = rgb.copy()
        edge = outline(labels, width=max(1, round(min(labels.shape) / 250)))
        out[edge] = palette[np.clip(np.maximum(labels[edge], 1), 0, len(palette) - 1)]
        return out
    if style != "tint":
        raise ValueError(f"unknown overlay style '{style}'; use outline or tint")
    # Pillow blends in 8-bit integers: no float copies of a full-size image (pixel budget).
    base = Image.fromarray(np.ascontiguousarray(rgb))
    blended = Image.blend(base, Image.fromarray(color_mask(labels, palette)), alpha)
    foreground = Image.fromarray((labels > 0).astype(np.uint8) * 255)
    return np.asarray(Image.composite(blended, base, foreground))


def colormap(probability: np.ndarray, name: str) -> np.ndarray:
    """(H, W) probabilities in [0, 1] -> (H, W, 3) uint8 colours of a matplotlib colour map
    (viridis, magma, jet, ...); `ValueError` names the known ones for an unknown name."""
    import matplotlib

    if name not in matplotlib.colormaps:
        known = ", ".join(sorted(n for n in matplotlib.colormaps if not n.endswith("_r"))[:12])
        raise ValueError(f"unknown colour map '{name}'; e.g. {known}, ... (matplotlib's names)")
    table = (matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round()
    index = (np.clip(probability, 0, 1) * 255).round().astype(np.uint8)
    return table.astype(np.uint8)[index]


def save_png(path: str | Path, array: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write a PNG atomically; with `palette`, as a palette PNG of class indices."""
    img = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[2] == 1 else array)
    if palette is not None:
        img = img.convert("P")
        flat = palette.reshape(-1).tolist()
        img.putpalette(flat + [0] * (768 - len(flat)))
    atomic_write(path, lambda f: img.save(f, format="PNG"))


TILE = 256  # panel tiles' height in pixels: a small polyp is still seen


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text`, shortened with an ellipsis in the middle until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    keep = len(text)
    while keep > 4 and draw.textlength(text[:keep // 2] + "…" + text[-(keep // 2):],
                                       font=font) > width:
        keep -= 2
    return text[:keep // 2] + "…" + text[-(keep // 2):]


def panel(image: np.ndarray, truth: np.ndarray | None, pred: np.ndarray, palette: np.ndarray,
          title: str = "", tile: int = TILE) -> np.ndarray:
    """image | truth | prediction side by side, each `tile` pixels high (scaled up or down,
    masks by nearest neighbour), a caption over each tile and `title` over the whole panel,
    shortened to fit."""
    h, w = image.shape[:2]
    size = (tile, max(1, round(w * tile / h)))  # (height, width)
    image = resize_image(image, size)
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    tiles = [("image", rgb)]
    if truth is not None:
        tiles.append(("truth", overlay(image, resize_mask(truth, size), palette)))
    tiles.append(("prediction", overlay(image, resize_mask(pred, size), palette)))
    th, tw = size
    gap, line = 6, 20
    top = 2 * line if title else line
    font = _font(14)
    canvas = Image.new("RGB", (len(tiles) * (tw + gap) - gap, th + top + 2), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((3, 2), _fit(draw, title, font, canvas.width - 6), fill=(0, 0, 0), font=font)
    for i, (name, arr) in enumerate(tiles):
        x = i * (tw + gap)
        canvas.paste(Image.fromarray(arr), (x, top))
        draw.text((x + 3, top - line + 2), _fit(draw, name, font, tw - 6), fill=(60, 60, 60),
                  font=font)
    return np.asarray(canvas)


def figure(width: float, height: float):
    """A matplotlib Figure of its own, drawn by the Agg canvas: no pyplot, so the backend and
    the figures of the user's session (a notebook's) are left as they are."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))


def plot_curves(rows: list[dict], path: str | Path, side_losses: bool = False) -> None:
    """curves.png of a run (see `curves_figure`)."""
    save_figure(curves_figure(rows, side_losses), path)


def curves_figure(rows: list[dict], side_losses: bool = False):
    """Training and validation loss, and validation mDice@point / mIoU@point, by epoch; with
    markers, so that a run of one or a few epochs shows its points. `side_losses`: the training
    loss also holds the deep supervision heads' losses (then it is not comparable with
    validation's)."""
    epochs = [r["epoch"] for r in rows]
    marker = "o" if len(epochs) <= 30 else None
    fig = figure(10, 3.8)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(epochs, [r["train_loss"] for r in rows], marker=marker,
             label="train (incl. side losses)" if side_losses else "train")
    ax1.plot(epochs, [r["val_loss"] for r in rows], marker=marker, label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss (train: on augmented batches)")
    ax1.legend()
    for key in ("val_mDice_point", "val_mIoU_point"):
        ax2.plot(epochs, [r[key] for r in rows], marker=marker,
                 label=key[4:].replace("_point", "@point"))
    ax2.set(xlabel="epoch", ylabel="score", title="Validation", ylim=(0, 1))
    ax2.legend()
    ax2.grid(alpha=0.3)
    if len(epochs) == 1:  # one point: an axis of one epoch, not matplotlib's -0.04..0.04
        for ax in (ax1, ax2):
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
            ax.set_xticks([epochs[0]])
    return fig


def plot_operating_curve(false_alarms, sensitivity, chosen: tuple[float, float], path,
                         title: str, label: str) -> None:
    """The sensitivity / false-alarm curve (one point per threshold) with the chosen point
    marked, as a PNG (see `figure`: no pyplot)."""
    fig = figure(4.6, 4.2)
    ax = fig.add_subplot()
    ax.plot(false_alarms, sensitivity, marker=".", markersize=3, label=label)
    ax.plot([chosen[0]], [chosen[1]], marker="o", markersize=9, color="red", linestyle="none",
            label=f"chosen: false alarms {chosen[0]:.1%}, sensitivity {chosen[1]:.1%}")
    ax.set(xlabel="false-alarm rate (frames without foreground)",
           ylabel="sensitivity (frames with foreground)", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02),
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)
