"""Competition submission files: predict on a data set's test images and write the CSV it wants.

A format says where the test images are, the CSV header, and the rows of one predicted mask.
`FORMATS` maps a format's name (`unetkit submit --format NAME`) to it; another format is added
by putting one more `SubmissionFormat` in the dictionary.

Run-length encoding (`rle_encode`) is the Kaggle one: the mask is flattened row by row
(row-major), and each run of foreground pixels is written as "start length", with start
1-indexed; an empty mask is the empty string.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from unetkit.core.files import check_outputs, write_text
from unetkit.data.folders import DataError, list_images
from unetkit.inference.predictor import Predictor
from unetkit.io.images import check_pixel_budget, pixel_batches
from unetkit.runs.check import resolve_model_dir
from unetkit.runs.folder import RunError


def rle_encode(mask: np.ndarray) -> str:
    """(H, W) bool/0-1 mask -> 'start length start length ...' over the row-major pixels."""
    flat = np.concatenate([[0], np.asarray(mask, dtype=bool).ravel().astype(np.int8), [0]])
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # 1-indexed starts and ends of runs
    starts, ends = edges[0::2], edges[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts, ends, strict=False))


def rle_decode(text: str, shape: tuple[int, int]) -> np.ndarray:
    """The inverse of `rle_encode`: an (H, W) uint8 0/1 mask."""
    flat = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    values = [int(v) for v in text.split()]
    if len(values) % 2:
        raise ValueError(f"run-length code has an odd number of values ({len(values)})")
    for start, length in zip(values[0::2], values[1::2], strict=False):
        if start < 1 or start - 1 + length > flat.size:
            raise ValueError(f"run {start} {length} lies outside a {shape[0]}x{shape[1]} mask")
        flat[start - 1:start - 1 + length] = 1
    return flat.reshape(shape)


@dataclass
class SubmissionFormat:
    folder: str  # sub-folder of the data folder holding the test images
    header: tuple[str, ...]
    num_classes: int | None  # the class count the format expects of the model (None: any)
    rows: Callable[[Path, np.ndarray], list[tuple[str, str]]]  # (image file, labels) -> rows


def bkai_neopolyp_rows(image: Path, labels: np.ndarray) -> list[tuple[str, str]]:
    """BKAI-IGH NeoPolyp: '<id>_0' the neoplastic (class 1) mask, '<id>_1' the non-neoplastic
    (class 2) mask, each at the image's own size."""
    return [(f"{image.stem}_0", rle_encode(labels == 1)),
            (f"{image.stem}_1", rle_encode(labels == 2))]


def carvana_rows(image: Path, labels: np.ndarray) -> list[tuple[str, str]]:
    """Carvana Image Masking Challenge: one row per photo, 'img' the file name, 'rle_mask' the car
    mask at the photo's own 1918x1280 size."""
    return [(image.name, rle_encode(labels > 0))]


FORMATS: dict[str, SubmissionFormat] = {
    "bkai-neopolyp": SubmissionFormat("test", ("Id", "Expected"), 3, bkai_neopolyp_rows),
    "carvana": SubmissionFormat("test", ("img", "rle_mask"), 2, carvana_rows),
}


def submit(run_dir, data_dir, format: str, out, tta: bool = False, batch_size: int = 16,
           device: str | None = None, progress: bool = True) -> dict:
    """Predict every image of `data_dir/<format's folder>` and write the CSV to `out` atomically."""
    if format not in FORMATS:
        raise RunError(f"no submission format '{format}'; known: {', '.join(sorted(FORMATS))}")
    fmt = FORMATS[format]
    predictor = Predictor.from_run(run_dir, device, tta=tta)
    if fmt.num_classes is not None and predictor.cfg.num_classes != fmt.num_classes:
        raise RunError(f"{run_dir}: the model has {predictor.cfg.num_classes} classes "
                       f"({', '.join(predictor.cfg.data.classes)}); the {format} format needs "
                       f"{fmt.num_classes}")
    folder = Path(data_dir) / fmt.folder
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; the {format} format predicts on "
                        f"DATA/{fmt.folder}/ (give --data the competition's data folder)")
    files = list(list_images(folder).values())
    if not files:
        raise DataError(f"{folder}: no images to predict")
    check_outputs([(Path(out), "the submission")], inputs=files, input_dirs=[folder],
                  run_dirs=[resolve_model_dir(run_dir)])
    sizes = [check_pixel_budget(path) for path in files]  # headers only, before any work
    rows: list[tuple[str, str]] = []
    bar = tqdm(total=len(files), desc="predicting", unit="image", disable=not progress)
    for batch in pixel_batches(sizes, batch_size):
        chunk = [files[i] for i in batch]
        images = [predictor.read(path) for path in chunk]
        for path, labels in zip(chunk, predictor.predict(images), strict=True):
            rows += fmt.rows(path, labels)
        bar.update(len(chunk))
    bar.close()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fmt.header)
    writer.writerows(rows)
    write_text(out, buf.getvalue())
    return {"images": len(files), "rows": len(rows), "out": str(out)}
