"""Label files read as untrusted input: every byte, element and number bounded before a mask is
decoded or a polygon rasterised.

A label file comes from another tool, another person, or an attacker. The checks here keep a
hostile one to a one-line `LabelError` (a ValueError), within a known amount of memory:

- bytes: a JSON file is read up to MAX_JSON_BYTES, an XML file and the annotations.xml inside
  a ZIP up to MAX_LABEL_BYTES; a ZIP member's size is checked in the ZIP's central directory
  and again while it is decompressed (a central directory can lie), and a ZIP whose central
  directory is over MAX_LABEL_BYTES is refused before it is read;
- XML: parsed by defusedxml, so no entity is ever expanded (no "billion laughs", no external
  file read), and with at most MAX_XML_ELEMENTS elements;
- JSON nested too deeply to parse is a LabelError, not a RecursionError;
- image sizes: positive integers within the pixel budget (io.budget), so a declared
  20000 x 20000 image allocates nothing;
- runs (RLE): non-negative, adding up to the box's pixel count exactly, before any array is made
  from them, by one rule for COCO's compressed and uncompressed runs and CVAT's (pycocotools
  says only "Invalid RLE mask representation", and overflows on a run of 10^30);
- polygons: 3 to MAX_POINTS finite points inside the image (one pixel of slack) and an outline
  of at most MAX_OUTLINE pixels, before pycocotools or Pillow rasterise them (pycocotools
  allocates a point per fifth of a pixel of outline: coordinates near 1e12 crashed it).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from unetkit.core.extras import require
from unetkit.core.files import read_limited
from unetkit.curation.errors import LabelError
from unetkit.io.budget import MAX_IMAGE_PIXELS

MAX_LABEL_BYTES = 64 << 20  # CVAT XML, and each ZIP member; ~10,000 images' masks are ~30 MB
# COCO JSON: parsed JSON can take ~20x its bytes (a list of 10M empty lists is 1.4 GB), so JSON
# gets half the bytes of XML, whose memory the element count bounds as well
MAX_JSON_BYTES = 32 << 20
MAX_XML_ELEMENTS = 1_000_000  # ~300 MB of parsed elements at most; a task of 10k images ~100k
MAX_OUTLINE = 1_000_000  # pixels of one polygon's outline (a 1280x1024 polyp's is ~2,000)
MAX_POINTS = 100_000  # points of one polygon: Pillow fills in time points x rows
SPLIT = "export fewer images per file (split the task)"
SLACK = 1.0  # pixels a polygon point may lie outside the image (tools round outward)


def read_json(path: Path) -> object:
    data = read_limited(path, MAX_JSON_BYTES, "a COCO annotation file", error=LabelError,
                        too_large=SPLIT)
    try:
        return json.loads(data)
    except RecursionError:
        raise LabelError(f"{path}: JSON nested too deeply to be a COCO file; export it again "
                         "from the tool") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LabelError(f"{path}: not a COCO annotation file ({type(exc).__name__}: {exc}); "
                         "export it again as COCO 1.0 (images, annotations, categories)") from None


def xml_bytes(path: Path) -> bytes:
    """The bytes of a CVAT XML file, or of the annotations.xml inside a CVAT export ZIP."""
    if not zipfile.is_zipfile(path):
        return read_limited(path, MAX_LABEL_BYTES, "a CVAT for images 1.1 file",
                            error=LabelError, too_large=SPLIT)
    member = "annotations.xml"
    too_big = (f"{path}: its {member} is over {MAX_LABEL_BYTES:,} bytes when unpacked, too "
               f"large for a CVAT task; {SPLIT}")
    with open(path, "rb") as f:
        # the central directory's size from the end record, before zipfile reads it whole and
        # holds an object per entry (~0.5 KB each): a CVAT export with its images lists one
        # entry per image, ~100 bytes each
        end = zipfile._EndRecData(f)  # the standard library's own reader
    if end and end[zipfile._ECD_SIZE] > MAX_LABEL_BYTES:
        raise LabelError(f"{path}: a ZIP whose list of files is {end[zipfile._ECD_SIZE]:,} bytes "
                         f"(at most {MAX_LABEL_BYTES:,}); {SPLIT}")
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
        if info.file_size > MAX_LABEL_BYTES:
            raise LabelError(too_big)
        with z.open(info) as f:
            data = f.read(MAX_LABEL_BYTES + 1)  # the bound holds even where the size lied
    if len(data) > MAX_LABEL_BYTES:
        raise LabelError(too_big)
    return data


def read_xml(path: Path):
    """The root element of a CVAT XML file (or ZIP), parsed without entities."""
    safe = require("defusedxml.ElementTree", "curation", "reading CVAT files")
    from defusedxml import DefusedXmlException

    what = "export the task again as 'CVAT for images 1.1'"
    try:
        data = xml_bytes(path)
        root, count = None, 0
        for _, elem in safe.iterparse(io.BytesIO(data), events=("start",)):
            root = elem if root is None else root
            count += 1
            if count > MAX_XML_ELEMENTS:
                raise LabelError(f"{path}: more than {MAX_XML_ELEMENTS:,} XML elements, too "
                                 f"many for a CVAT task; {SPLIT}")
        return root
    except DefusedXmlException as exc:
        raise LabelError(f"{path}: XML with entities or a DTD ({type(exc).__name__}), which "
                         f"unetkit never expands; {what}") from None
    except (OSError, KeyError, zipfile.BadZipFile, NotImplementedError, RuntimeError,
            safe.ParseError) as exc:
        raise LabelError(f"{path}: not a CVAT for images 1.1 file ({type(exc).__name__}: "
                         f"{exc}); {what}") from None


def is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def image_size(where: str, width, height) -> tuple[int, int]:
    """(width, height) declared for an image: positive integers within the pixel budget."""
    if not (is_int(width) and is_int(height) and width > 0 and height > 0):
        raise LabelError(f"{where}: width {width!r} and height {height!r} must be positive "
                         "whole numbers of pixels; export the file again from the tool")
    if width * height > MAX_IMAGE_PIXELS:
        raise LabelError(f"{where}: {width}x{height} pixels is more than unetkit reads "
                         f"({MAX_IMAGE_PIXELS:,}); annotate the image at its own size")
    return int(width), int(height)


def checked_runs(where: str, counts, total: int) -> np.ndarray:
    """Run lengths that are non-negative whole numbers adding up to `total` pixels."""
    if not isinstance(counts, (list, np.ndarray)) or not all(is_int(c) for c in counts):
        raise LabelError(f"{where}: run lengths must be whole numbers; export the file again")
    if any(c < 0 for c in counts):
        first = next(c for c in counts if c < 0)
        raise LabelError(f"{where}: a negative run length ({first}); export the file again")
    added = sum(int(c) for c in counts)
    if added != total:
        raise LabelError(f"{where}: runs adding up to {added} pixels for a box of {total}; "
                         "export the file again")
    return np.asarray(counts, np.int64)


def coco_string_counts(where: str, text) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString): each value
    is 5-bit groups, low first, 0x20 = more groups follow, 0x10 of the last = negative; from the
    third value on, each is a difference from the value two before."""
    if not isinstance(text, str) or not text.isascii():
        raise LabelError(f"{where}: RLE counts must be a string of ASCII characters; export the "
                         "file again")
    chars = np.frombuffer(text.encode("ascii"), np.uint8).astype(np.int64) - 48
    if chars.size and (chars.min() < 0 or chars.max() > 63):
        raise LabelError(f"{where}: RLE counts hold characters outside COCO's alphabet; export "
                         "the file again")
    last = (chars & 0x20) == 0
    ends = np.flatnonzero(last)
    if chars.size and not last[-1]:
        raise LabelError(f"{where}: RLE counts end inside a value; export the file again")
    starts = np.concatenate([[0], ends[:-1] + 1])
    if chars.size and (ends - starts).max() >= 7:  # 35 bits: more than any image's pixels
        raise LabelError(f"{where}: an RLE run longer than any image; export the file again")
    group = np.repeat(np.arange(len(ends)), ends - starts + 1)
    shift = 5 * (np.arange(chars.size) - starts[group])
    values = np.zeros(len(ends), np.int64)
    np.add.at(values, group, (chars & 0x1F) << shift)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (ends - starts + 1))[negative]
    values[1::2] = np.cumsum(values[1::2])  # 1, 3, 5...: each adds to the one two before
    values[2::2] = np.cumsum(values[2::2])  # 2, 4, 6...: likewise (0 stands alone)
    return values.tolist()


def mask_from_runs(counts: np.ndarray, h: int, w: int, column_major: bool) -> np.ndarray:
    """An (h, w) boolean mask from checked run lengths (first run background)."""
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    return flat.reshape(w, h).T if column_major else flat.reshape(h, w)


def checked_polygon(where: str, coords, w: int, h: int) -> np.ndarray:
    """(n, 2) float points of a polygon given as [x0, y0, x1, y1, ...], checked."""
    if not isinstance(coords, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in coords):
        raise LabelError(f"{where}: a polygon must be a list of numbers x0, y0, x1, y1, ...; "
                         "export the file again")
    if len(coords) > 2 * MAX_POINTS:
        raise LabelError(f"{where}: a polygon of {len(coords) // 2:,} points (at most "
                         f"{MAX_POINTS:,}); simplify it in the tool")
    if len(coords) < 6 or len(coords) % 2:
        raise LabelError(f"{where}: a polygon needs at least 3 points (an even count of "
                         f"numbers), got {len(coords)} numbers; export the file again")
    try:
        pts = np.asarray(coords, np.float64).reshape(-1, 2)
    except OverflowError:
        pts = np.array([[np.inf, np.inf]])
    if not np.isfinite(pts).all() or (pts < -SLACK).any() or (pts[:, 0] > w + SLACK).any() \
            or (pts[:, 1] > h + SLACK).any():
        raise LabelError(f"{where}: a polygon point lies outside the {w}x{h} image or is not a "
                         "finite number; annotate the image at its own size")
    steps = np.abs(np.diff(np.vstack([pts, pts[:1]]), axis=0)).max(1).sum()
    if steps > MAX_OUTLINE:
        raise LabelError(f"{where}: a polygon with an outline of {steps:,.0f} pixels (at most "
                         f"{MAX_OUTLINE:,}); simplify it in the tool")
    return pts


class LabelSet:
    """A parsed and checked label file, nothing decoded yet: `sizes` {image name: (width,
    height)} in the file's order, and `mask(name)` the (H, W) class-index mask of one image,
    decoded on demand (so that sizes are compared with the real images first, and only one
    mask is held at a time)."""

    def __init__(self, path: Path, sizes: dict[str, tuple[int, int]], decode):
        self.path, self.sizes, self._decode = path, sizes, decode

    def mask(self, name: str) -> np.ndarray:
        return self._decode(name)


def checked_name(where: str, name, seen: dict) -> str:
    """An image's file name: a non-empty string, not given twice (two images of one name,
    e.g. from two folders, would merge or drop their annotations)."""
    if not isinstance(name, str) or not name.strip():
        raise LabelError(f"{where}: an image without a file name ({name!r}); export the file "
                         "again from the tool")
    if name in seen:
        raise LabelError(f"{where}: two images are named '{name}' (from two folders?); give "
                         "each image a distinct file name and export again")
    return name
