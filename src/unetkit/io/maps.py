"""Reading probability maps: the one reader of `score`, `audit` and every verb that takes maps.

A map holds one probability per pixel (per class for a `.npy` of a multi-class model):
- grey images: 8-bit as v / 255, 16-bit as v / 65535 (scaled by the bit depth, never clipped:
  a 16-bit map written as p * 65535 reads as p); bilevel images as 0 / 1;
- colour images: read when the probability is plainly one plane: R = G = B (grey saved as RGB)
  or a single channel that carries values while the others are 0 (e.g. the red channel);
  any other colour image is refused (its luminance would mix the channels into a wrong map);
  an alpha channel is ignored;
- float images (TIFF) and `.npy` arrays: probabilities in [0, 1], (H, W) or (K, H, W).
`read_map` keeps the integer grey levels (the polyp literature's metrics work on 0-255 levels,
see evaluation.field_metrics); `as_probabilities` turns any map into float32 in [0, 1].
Every refusal is an `ImageError` naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.core.reading import open_regular
from unetkit.io.budget import ImageError
from unetkit.io.images import SIXTEEN_BIT, open_image

NPY_SUFFIX = ".npy"
NOISE = 8  # JPEG noise in a colour map's channels: below it, a channel is "the same" or "empty"


def read_map(path: str | Path, classes: int | None = None) -> np.ndarray:
    """A map as (K, H, W): uint8 (8-bit and bilevel images), uint16 (16-bit images) or float32
    probabilities (.npy, float images). `classes`: the model's class count; a `.npy` must then
    hold one plane (a binary model's foreground) or exactly `classes` planes."""
    path = Path(path)
    arr = _read_npy(path) if path.suffix.lower() == NPY_SUFFIX else _read_image(path)
    arr = arr[None] if arr.ndim == 2 else arr
    if arr.ndim != 3 or not arr.size:
        raise ImageError(f"{path}: a map of shape {arr.shape}; save (H, W) or (K, H, W) "
                         "probabilities")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise ImageError(f"{path}: values outside [0, 1] or not finite; save probabilities "
                             "(after the sigmoid / softmax), not logits or labels")
        arr = arr.astype(np.float32)
    if classes is not None:
        allowed = (1, 2) if classes == 2 else (classes,)
        if arr.shape[0] not in allowed:
            raise ImageError(f"{path}: {arr.shape[0]} class planes, but the model has {classes} "
                             f"classes; save {' or '.join(map(str, allowed))} planes "
                             "(K, H, W), one per class")
    return arr


def as_probabilities(arr: np.ndarray) -> np.ndarray:
    """A map of `read_map` as float32 probabilities in [0, 1] (the same shape)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return (arr.astype(np.float64) / 65535.0).astype(np.float32)
    return arr.astype(np.float32)


def foreground_plane(arr: np.ndarray) -> np.ndarray:
    """The (H, W) foreground of a (K, H, W) map: its only plane, else 1 - background."""
    if arr.shape[0] == 1:
        return arr[0]
    probs = as_probabilities(arr)
    return (1.0 - probs[0]).clip(0, 1)


def _read_npy(path: Path) -> np.ndarray:
    try:
        with open_regular(path, "a NumPy .npy file", ImageError) as f:  # never a FIFO
            arr = np.load(f, allow_pickle=False)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: not a NumPy array file ({exc}); write it again with "
                         "numpy.save") from None
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ImageError(f"{path}: {arr.dtype} values; save float probabilities in [0, 1]")
    return arr.astype(np.float32)


def _read_image(path: Path) -> np.ndarray:
    img = open_image(path)
    if img.mode in SIXTEEN_BIT:
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageError(f"{path}: 32-bit integer values; save maps as 8- or 16-bit grey PNG")
        return arr.astype(np.uint16)
    if img.mode == "F":
        return np.asarray(img, dtype=np.float32)
    if img.mode == "1":
        return np.asarray(img, dtype=np.uint8) * np.uint8(255)
    if img.mode in ("L", "LA"):
        return np.asarray(img.getchannel(0))
    rgb = np.asarray(img.convert("RGB"))
    spread = rgb.max(-1).astype(np.int16) - rgb.min(-1)
    if spread.max() <= NOISE:  # grey saved as colour (JPEG: nearly equal channels)
        return np.asarray(img.convert("RGB").convert("L"))
    carrying = [c for c in range(3) if rgb[..., c].max() > NOISE]
    if len(carrying) == 1:  # the probability in one channel, the others empty
        return np.ascontiguousarray(rgb[..., carrying[0]])
    raise ImageError(f"{path}: a colour image whose channels differ; a map holds one "
                     "probability per pixel: save it as a grey PNG (8 or 16 bit)")
