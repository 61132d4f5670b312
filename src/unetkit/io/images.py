"""Reading images and masks from disk, and turning masks into class-index arrays.

Every failure raises `ImageError` with the file's name and what to do about it. Mask encodings
are declared in the configuration (never guessed per file):
- binary: a grey mask; pixels >= threshold are foreground (JPEG-noisy masks included);
- color:  each pixel takes the class whose declared RGB colour is nearest (JPEG-noisy colour
          masks, e.g. NeoPolyp's red/green on black); palette PNGs are read through their palette;
- index:  pixel values are class indices (grey PNGs or the indices of a palette PNG).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from unetkit.core.reading import open_regular
from unetkit.io.budget import MAX_BATCH_PIXELS, MAX_IMAGE_PIXELS, ImageError
from unetkit.io.tiff import is_tiff, open_tiff

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image, EXIF orientation applied, or raise `ImageError`.

    Always a full decode (never JPEG draft mode): see `preprocess` for why.
    """
    path = Path(path)
    if is_tiff(path):  # tifffile reads what Pillow cannot (see tiff.py)
        return open_tiff(path)
    try:
        # a FIFO or a device is refused here, never read (see core.reading)
        with open_regular(path, "an image file", ImageError) as f, \
                warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(f)
            _check_size(path, img.width, img.height)
            img.load()
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: too many pixels to decode safely; downscale the image "
                         "first") from None
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's ways of saying "broken file"
        raise ImageError(f"{path}: cannot read this image ({_reason(exc)}); re-export it as PNG "
                         "or JPEG, or remove it from the folder") from None
    except MemoryError:
        raise ImageError(f"{path}: out of memory decoding this image; downscale it, or free "
                         "memory") from None
    return ImageOps.exif_transpose(img)


def _check_size(path, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{path}: {width}x{height} pixels is more than unetkit reads "
                         f"({MAX_IMAGE_PIXELS:,}, the pixel budget); downscale the image first")


def check_pixel_budget(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image from its header alone, or `ImageError` if it is over the
    pixel budget or not an image: nothing is decoded, so a bomb costs nothing."""
    path = Path(path)
    try:
        with open_regular(path, "an image file", ImageError) as f, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as img:
                size = img.size
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: too many pixels to decode safely; downscale the image "
                         "first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read this image ({_reason(exc)}); re-export it as PNG "
                         "or JPEG, or remove it from the folder") from None
    _check_size(path, *size)
    return size


def _reason(exc: Exception) -> str:
    # Pillow names the file it could not identify by its file object, here an opened descriptor
    # ("<_io.BufferedReader name=11>"): the message already names the path.
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image format Pillow knows"
    return str(exc)


def pixel_batches(sizes: list[tuple[int, int]], max_count: int,
                  budget: int = MAX_BATCH_PIXELS) -> list[list[int]]:
    """Indices of images of these (width, height) sizes grouped into batches of at most
    `max_count` images whose pixels add up to at most `budget` (an image alone is always a
    batch: it passed the image budget)."""
    batches: list[list[int]] = []
    current, pixels = [], 0
    for i, (w, h) in enumerate(sizes):
        if current and (len(current) >= max_count or pixels + w * h > budget):
            batches.append(current)
            current, pixels = [], 0
        current.append(i)
        pixels += w * h
    if current:
        batches.append(current)
    return batches


def to_array(img: Image.Image, channels: int) -> np.ndarray:
    """An (H, W, channels) uint8 array: RGB for 3 channels, grey for 1, whatever the file's mode."""
    if img.mode in SIXTEEN_BIT:  # 16-bit images: the top 8 bits, the same rule for every image
        arr = np.asarray(img, dtype=np.uint32)
        img = Image.fromarray((arr >> 8).clip(0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "P") and channels == 3:
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))  # transparent pixels become black
        img = Image.alpha_composite(background, img)
    img = img.convert("RGB" if channels == 3 else "L")
    arr = np.asarray(img, dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[..., None]


def read_image(path: str | Path, channels: int = 3) -> np.ndarray:
    return to_array(open_image(path), channels)


def resize_image(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, C) uint8 image to (height, width) with antialiased bilinear filtering."""
    h, w = size
    if arr.shape[:2] == (h, w):
        return arr
    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    out = np.asarray(img.resize((w, h), Image.BILINEAR, reducing_gap=3.0))
    return out if out.ndim == 3 else out[..., None]


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if mask.shape == (h, w):
        return mask
    return np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))


class MaskDecoder:
    """Turns a mask file into an (H, W) uint8 array of class indices, as the config declares."""

    # How a message names the settings, for a data folder's configuration by default; a verb
    # taking them as options (`score`) passes its own (see `OPTION_NAMES`).
    CONFIG_NAMES = {"encoding": "data.mask_encoding", "threshold": "data.mask_threshold",
                    "colors": "data.class_colors", "classes": "data.classes"}

    def __init__(self, encoding: str, num_classes: int, threshold: int = 128,
                 colors: list[list[int]] | None = None, ignore_index: int | None = None,
                 names: dict[str, str] | None = None):
        self.encoding, self.num_classes, self.threshold = encoding, num_classes, threshold
        self.colors = np.asarray(colors, dtype=np.int32) if colors is not None else None
        self.ignore_index = ignore_index
        self.names = names or self.CONFIG_NAMES

    @classmethod
    def from_config(cls, cfg) -> MaskDecoder:
        d = cfg.data
        return cls(d.mask_encoding, cfg.num_classes, d.mask_threshold, d.class_colors,
                   d.ignore_index)

    def decode(self, img: Image.Image) -> np.ndarray:
        if self.encoding == "binary":
            grey = mask_grey(img)
            return (grey >= self.threshold).astype(np.uint8)
        if self.encoding == "index":
            if img.mode not in ("P", "L", "I", "I;16", "1"):
                img = img.convert("L")
            return np.asarray(img).astype(np.uint8)
        # Nearest colour: |x - c|^2 = |x|^2 - 2 x.c + |c|^2, and |x|^2 is the same for every c.
        # Integers below 2^24, so float32 is exact and ties break as in the direct formula.
        # For black/red/green this is NeoPolyp's rule: red iff r > 127.5 and r > g, etc.
        rgb = to_array(img, 3).astype(np.float32)
        colors = self.colors.astype(np.float32)
        score = rgb @ (-2 * colors.T) + (colors ** 2).sum(1)  # (H, W, classes)
        return score.argmin(-1).astype(np.uint8)

    def problems(self, img: Image.Image, mask: np.ndarray) -> list[str]:
        """Reasons to doubt that this mask is encoded as declared (empty list: looks right)."""
        found, n = [], self.names
        if self.encoding == "binary":
            if img.mode not in ("L", "1", *SIXTEEN_BIT) and colourful(to_array(img, 3)):
                return [f"a colour mask read as grey ({n['encoding']}=binary); declare "
                        f"{n['encoding']}=color and {n['colors']} (`unetkit check-data` "
                        "names the colours it finds)"]
            grey = mask_grey(img)
            mid = ((grey > 32) & (grey < 224)).mean()
            if 0 < grey.max() < self.threshold:
                found.append(f"all values are below the threshold {self.threshold} (max "
                             f"{grey.max()}): looks like a 0/1 index mask; set "
                             f"{n['encoding']}=index or {n['threshold']}=1")
            elif mid > 0.05:
                found.append(f"{mid:.0%} of pixels are mid-grey: not a binary mask; check "
                             f"the masks folder holds masks, or declare {n['encoding']}")
        elif self.encoding == "index":
            # The file's own values: a 16-bit 256 would wrap to 0 in the uint8 mask.
            raw = np.asarray(img) if img.mode in ("P", "L", "I", "I;16", "1") else mask
            valid = raw < self.num_classes
            if self.ignore_index is not None:
                valid |= raw == self.ignore_index
            if not valid.all():
                bad = sorted(set(np.unique(raw[~valid]).tolist()))[:5]
                found.append(f"values {bad} are not class indices 0..{self.num_classes - 1}; "
                             f"declare {n['encoding']}=binary or color, or fix {n['classes']}")
        else:
            rgb = to_array(img, 3).astype(np.int32)
            nearest = self.colors[mask]
            far = (np.abs(rgb - nearest).max(-1) > 100).mean()
            if far > 0.01:
                found.append(f"{far:.0%} of pixels are far from every colour in "
                             f"{n['colors']}; check the colours declared for this data set")
        return found


def colourful(rgb: np.ndarray) -> bool:
    """Whether an (H, W, 3) mask holds colours, not greys: more than 0.1 % of its pixels have
    channels 64 or more apart (JPEG noise on a grey mask stays far below that)."""
    spread = rgb.max(-1).astype(np.int16) - rgb.min(-1)
    return bool((spread > 64).mean() > 0.001)


def mask_grey(img: Image.Image) -> np.ndarray:
    """A binary mask's grey values; a 16-bit mask keeps its values up to 255 (a 0/1 mask stays
    0/1 and is reported as an index mask, a 0/65535 one reads as 0/255)."""
    if img.mode in SIXTEEN_BIT:
        return np.asarray(img, dtype=np.uint32).clip(0, 255).astype(np.uint8)
    return to_array(img, 1)[..., 0]


def read_mask(path: str | Path, decoder: MaskDecoder) -> np.ndarray:
    return decoder.decode(open_image(path))


def read_checked_mask(path: str | Path, decoder: MaskDecoder) -> np.ndarray:
    """A mask decoded as declared, or `ImageError` naming the file and the fix when it does not
    look encoded so (the rules of `check-data`: `MaskDecoder.problems`)."""
    img = open_image(path)
    mask = decoder.decode(img)
    found = decoder.problems(img, mask)
    if found:
        raise ImageError(f"{path}: {found[0]}")
    return mask
