"""Near-duplicate frames: the same picture twice in a data set, above all across its splits.

A frame in the training split and again (re-encoded, resized, a little brighter) in the test
split inflates the test scores: the model has seen the answer. Each image gets two 64-bit
perceptual hashes from `imagehash`: `phash` (the signs of the 8x8 lowest frequencies of the DCT
of a 32x32 grey copy) and `dhash` (the signs of the differences of neighbouring pixels of a 9x8
grey copy). Two images are near-duplicates when both hashes differ in at most `HASH_DISTANCE`
bits.

The threshold, measured on all 1000 Kvasir-SEG images (499,500 pairs): with phash alone,
distinct frames come within 4 bits (one pair within 2: other polyps behind the same black
corners and on-screen text box), and with dhash alone too; with both at most 4 bits apart only
3 pairs remain, and all 3 are the same frame twice (a few seconds apart on the video's clock,
all in the training splits of both the Medico 2020 and the PraNet protocols). A frame resized
to 90 %, 5 % brighter and re-encoded as JPEG quality 70 stays within 4 bits (phash) and 3 bits
(dhash) of itself (100 frames tried). A cropped copy is not found: cutting 2 % off each side
moves phash by up to 12 bits, as far as unrelated frames.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from unetkit.core.files import write_text

HASH_DISTANCE = 4  # bits of 64, in each hash; see the module's docstring for the measurement


def require_imagehash():
    from unetkit.core.extras import require

    return require("imagehash", "curation", "near-duplicate search")


def perceptual_hash(image: np.ndarray) -> np.ndarray:
    """The phash and dhash of an (H, W, C) uint8 image, as 128 booleans (64 each)."""
    from PIL import Image

    imagehash = require_imagehash()
    img = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    return np.concatenate([imagehash.phash(img).hash.ravel(), imagehash.dhash(img).hash.ravel()])


def near_duplicates(names: list[str], hashes: np.ndarray, split_of: dict[str, str],
                    max_distance: int = HASH_DISTANCE) -> list[dict]:
    """Every pair of images whose hashes (`perceptual_hash`) are both within `max_distance`
    bits: (a, b, distance (phash), dhash_distance, their splits, whether the splits differ),
    pairs across splits first, then by distance."""
    if len(names) < 2:
        return []
    bits = np.packbits(hashes.astype(bool), axis=1)  # (N, 16) bytes: phash, then dhash
    pairs = []
    for i in range(len(names) - 1):  # one row at a time: memory linear in N
        diff = np.unpackbits(bits[i] ^ bits[i + 1:], axis=1)
        phash, dhash = diff[:, :64].sum(1), diff[:, 64:].sum(1)
        for j in np.flatnonzero((phash <= max_distance) & (dhash <= max_distance)):
            a, b = names[i], names[i + 1 + j]
            sa, sb = split_of.get(a, ""), split_of.get(b, "")
            pairs.append({"image_a": a, "image_b": b, "distance": int(phash[j]),
                          "dhash_distance": int(dhash[j]), "split_a": sa, "split_b": sb,
                          "cross_split": bool(sa and sb and sa != sb)})
    pairs.sort(key=lambda p: (not p["cross_split"], p["distance"], p["image_a"], p["image_b"]))
    return pairs


def write_duplicates(path: str | Path, pairs: list[dict]) -> None:
    buf = io.StringIO()
    columns = ["image_a", "image_b", "distance", "dhash_distance", "split_a", "split_b",
               "cross_split"]
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(pairs)
    write_text(path, buf.getvalue())
