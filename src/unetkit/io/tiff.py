"""TIFF files through tifffile, the field's reader (CVC-ClinicDB, ETIS-Larib, CVC-ColonDB ship
TIFF), including what Pillow cannot open: RGB stored as three samples with a MinIsBlack
photometric tag, planar (channels-first) storage, 16-bit samples and multi-page files.

Rules:
- 8-bit samples are used as they are. 16-bit samples keep their top 8 bits (value >> 8, i.e.
  0..65535 onto 0..255): one fixed rule for every image of every data set, never the image's
  own maximum, so the same tissue has the same grey in every frame. Other sample types (float,
  signed, 32-bit) are refused with a message.
- A file whose extra pages are reduced-size previews (thumbnails, pyramids) is read from its
  first page. A stack of several full-size pages (a video or z-stack) is refused: unetkit reads
  one image per file, and which page is meant is not for it to guess.
- Greyscale stays one channel (values 0..255); three or four samples are RGB (a fourth sample
  is alpha and is composited onto black, as for PNG).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TIFF_EXTENSIONS = (".tif", ".tiff")


def is_tiff(path: str | Path) -> bool:
    return Path(path).suffix.lower() in TIFF_EXTENSIONS


def read_tiff(path: str | Path, keep_grey16: bool = False) -> np.ndarray:
    """An (H, W) or (H, W, C) uint8 array from a TIFF file, by the rules above (with
    `keep_grey16`, a 16-bit grey page is returned as it is, uint16)."""
    import tifffile

    from unetkit.core.reading import open_regular
    from unetkit.io.budget import MAX_IMAGE_PIXELS as MAX_PIXELS
    from unetkit.io.budget import ImageError

    path = Path(path)
    try:
        with open_regular(path, "a TIFF image", ImageError) as fh, \
                tifffile.TiffFile(fh, name=path.name) as tif:  # an fd has no name of its own
            pages = tif.pages
            first = pages[0]
            full = [p for p in pages if getattr(p, "shape", None) is not None
                    and p.shape[:2] == first.shape[:2] and not (p.subfiletype & 1)]
            if len(pages) > 1 and len(full) > 1:
                raise ImageError(f"{path}: a stack of {len(full)} full-size pages; unetkit reads "
                                 "one image per file: save the page you mean on its own (e.g. "
                                 "tifffile.imwrite('frame.tiff', tifffile.imread(path, key=0)))")
            if np.prod(first.shape[:2], dtype=np.int64) > MAX_PIXELS:
                raise ImageError(f"{path}: more than {MAX_PIXELS:,} pixels; downscale it first")
            arr = first.asarray()
            planar = first.planarconfig == tifffile.PLANARCONFIG.SEPARATE
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except Exception as exc:  # tifffile's many ways of saying "broken file"
        raise ImageError(f"{path}: cannot read this TIFF ({exc}); re-export it as PNG or "
                         "uncompressed TIFF") from None
    if arr.ndim == 3 and planar:
        arr = np.moveaxis(arr, 0, -1)  # (samples, H, W) -> (H, W, samples)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"{path}: samples of shape {arr.shape} are neither grey nor RGB(A); "
                         "save it as an RGB or greyscale image")
    if keep_grey16 and arr.ndim == 2 and arr.dtype == np.uint16:
        return arr
    return to_uint8(arr, path)


def to_uint8(arr: np.ndarray, path) -> np.ndarray:
    from unetkit.io.budget import ImageError

    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)  # the fixed 16-bit rule (see above)
    raise ImageError(f"{path}: {arr.dtype} samples; unetkit reads 8- and 16-bit unsigned "
                     "images: convert it (e.g. scale to uint16 with one rule for the whole set)")


def open_tiff(path: str | Path) -> Image.Image:
    """A TIFF as a PIL image, for `images.open_image`: L, RGB or RGBA; a 16-bit grey page stays
    16-bit ("I;16"), so a mask keeps its values (images.to_array applies the 16-bit rule)."""
    arr = read_tiff(path, keep_grey16=True)
    if arr.dtype == np.uint16:
        return Image.fromarray(arr)  # uint16 (H, W): mode "I;16"
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    return Image.fromarray(np.ascontiguousarray(arr), "RGB" if arr.shape[2] == 3 else "RGBA")
