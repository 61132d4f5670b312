"""Near-duplicate frames: the same picture twice in a data set, above all across its splits.

A frame in the training split and again (re-encoded, resized, a little brighter) in the test
split inflates the test scores: the model has seen the answer. Each image gets a perceptual hash
(`imagehash.phash`: the signs of the 8x8 lowest frequencies of the DCT of a 32x32 grey copy, 64
bits), and two images whose hashes differ in at most `HASH_DISTANCE` bits are near-duplicates.

The threshold, measured on Kvasir-SEG (400 images, 79,800 pairs of distinct frames): no pair of
distinct frames is within 4 bits (the closest are 6 bits apart: other polyps behind the same
black corners and on-screen text box), while a frame resized to 90 %, 5 % brighter and
re-encoded as JPEG quality 70 stays within 2 bits of itself. A cropped copy is not found: cutting
2 % off each side moves the hash by up to 12 bits, as far as unrelated frames.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..files import write_text

HASH_DISTANCE = 4  # bits of 64; see the module's docstring for the measurement


def require_imagehash():
    try:
        import imagehash
    except ImportError:
        raise ImportError("near-duplicate search needs imagehash: pip install "
                          "'unetkit[curation]'") from None
    return imagehash


def perceptual_hash(image: np.ndarray) -> np.ndarray:
    """The 64-bit perceptual hash of an (H, W, C) uint8 image, as 64 booleans."""
    from PIL import Image

    imagehash = require_imagehash()
    arr = image[..., 0] if image.shape[2] == 1 else image
    return imagehash.phash(Image.fromarray(arr)).hash.ravel().copy()


def near_duplicates(names: list[str], hashes: np.ndarray, split_of: dict[str, str],
                    max_distance: int = HASH_DISTANCE) -> list[dict]:
    """Every pair of images whose hashes are within `max_distance` bits: (a, b, distance,
    their splits, whether the splits differ), pairs across splits first, then by distance."""
    if len(names) < 2:
        return []
    bits = np.packbits(hashes.astype(bool), axis=1)  # (N, 8) bytes
    pairs = []
    for i in range(len(names) - 1):  # one row at a time: memory linear in N
        diff = np.unpackbits(bits[i] ^ bits[i + 1:], axis=1).sum(1)
        for j in np.flatnonzero(diff <= max_distance):
            a, b = names[i], names[i + 1 + j]
            sa, sb = split_of.get(a, ""), split_of.get(b, "")
            pairs.append({"image_a": a, "image_b": b, "distance": int(diff[j]),
                          "split_a": sa, "split_b": sb,
                          "cross_split": bool(sa and sb and sa != sb)})
    pairs.sort(key=lambda p: (not p["cross_split"], p["distance"], p["image_a"], p["image_b"]))
    return pairs


def write_duplicates(path: str | Path, pairs: list[dict]) -> None:
    buf = io.StringIO()
    columns = ["image_a", "image_b", "distance", "split_a", "split_b", "cross_split"]
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(pairs)
    write_text(path, buf.getvalue())
