"""The Carvana Image Masking Challenge (Kaggle): its run-length encoding and submission file.

Data layout: `train/<car>_<NN>.jpg` (16 views per car, NN = 01..16), `train_masks/<car>_<NN>_mask.gif`,
optional `train_masks.csv` (the same masks run-length encoded) and `metadata.csv` (id, year, make,
model, trim1, trim2 per car). Photos are 1918x1280.

Submission: a CSV `img,rle_mask` with one row per `test/*.jpg`; `rle_mask` is space-separated
"start length" pairs, starts 1-indexed, over the mask flattened row by row (the competition's
definition, at the full 1918x1280 size); an empty mask is an empty string.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .images import read_image
from .runs import RunError, write_text

WIDTH, HEIGHT = 1918, 1280


def rle_encode(mask: np.ndarray) -> str:
    """(H, W) mask (nonzero = car) -> "start length ..." (1-indexed, row-major)."""
    flat = np.concatenate(([0], (np.asarray(mask).ravel() > 0).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(flat)) + 1  # 1-indexed run starts and (exclusive) ends
    edges[1::2] -= edges[0::2]  # ends -> lengths
    return " ".join(map(str, edges))


def rle_decode(rle: str, shape: tuple[int, int] = (HEIGHT, WIDTH)) -> np.ndarray:
    """"start length ..." -> (H, W) uint8 mask of 0/1; raises ValueError on a malformed string."""
    numbers = np.asarray(rle.split(), dtype=np.int64)
    if len(numbers) % 2:
        raise ValueError(f"run-length string has an odd number of values ({len(numbers)})")
    flat = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for start, length in zip(numbers[0::2], numbers[1::2]):
        if start < 1 or length < 0 or start - 1 + length > flat.size:
            raise ValueError(f"run {start} {length} falls outside a {shape[1]}x{shape[0]} mask")
        flat[start - 1:start - 1 + length] = 1
    return flat.reshape(shape)


def write_submission(run_dir, data_dir, out, tta: bool = False, progress: bool = True) -> dict:
    """Predict every `data_dir/test/*.jpg` with the run's model and write `img,rle_mask` to `out`.

    Masks are encoded at each photo's own size (the competition's 1918x1280), rows sorted by
    file name.
    """
    from .predict import Predictor

    test_dir = Path(data_dir) / "test"
    files = sorted(test_dir.glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"{test_dir}: no test photos (*.jpg); give --data the folder "
                                "that holds Carvana's test/")
    predictor = Predictor.from_run(run_dir, tta=tta)
    if predictor.cfg.num_classes != 2:
        raise RunError(f"{run_dir}: a Carvana submission needs a binary model, this one has "
                         f"{predictor.cfg.num_classes} classes")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["img", "rle_mask"])
    for path in tqdm(files, desc="carvana submission", unit="image", disable=not progress):
        mask = predictor.predict([read_image(path, predictor.channels)])[0]
        writer.writerow([path.name, rle_encode(mask)])
    write_text(out, buf.getvalue())
    return {"images": len(files), "out": str(out)}
