"""Per-image summaries of predicted masks, readable without Python: summary.json and summary.csv.

For each image and each foreground class: the predicted area (pixels and fraction of the image),
the bounding box of all its pixels ([x0, y0, x1, y1], inclusive, in image pixels) and the number
of connected components (8-connected: pixels touching at a corner belong together, as a person
looking at the mask would count them), by scipy.ndimage.label.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from unetkit.core.files import output_set, write_text

SUMMARY_FILES = ("summary.json", "summary.csv")  # what write_summaries writes beside the masks
EIGHT = np.ones((3, 3), bool)  # 8-connectivity: pixels touching at a corner belong together


def count_components(mask: np.ndarray) -> int:
    """The number of 8-connected components of True pixels in a 2-D mask."""
    from scipy import ndimage  # imported when counted: the video path never counts

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"count_components needs a 2-D mask, got shape {mask.shape}")
    return int(ndimage.label(mask, structure=EIGHT)[1])


def class_stats(labels: np.ndarray, classes: list[str], components: bool = True) -> dict:
    """Per foreground class of an (H, W) class-index mask: area_px, area_fraction, bbox_xyxy
    (None when absent) and, unless `components` is False (video frames, where it would cost
    real time), the number of components. The one place these numbers are computed: predict's
    summaries, the web page and the video path's frames.csv all read them from here."""
    h, w = labels.shape
    per_class = {}
    for k, cls in enumerate(classes[1:], start=1):
        mask = labels == k
        area = int(np.count_nonzero(mask))
        box = None
        if area:
            ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = [int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])]
        per_class[cls] = {"area_px": area, "area_fraction": round(area / (h * w), 6),
                          "bbox_xyxy": box}
        if components:
            per_class[cls]["components"] = count_components(mask) if area else 0
    return per_class


def summarize(name: str, labels: np.ndarray, classes: list[str]) -> dict:
    """The summary of one (H, W) class-index mask: one entry per foreground class."""
    h, w = labels.shape
    return {"image": name, "height": h, "width": w, "classes": class_stats(labels, classes)}


def write_summaries(out_dir: str | Path, summaries: list[dict]) -> None:
    """summary.json (a list, one object per image) and summary.csv (one row per image and class)."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "height", "width", "class", "area_px", "area_fraction",
                     "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "components"])
    for s in summaries:
        for cls, c in s["classes"].items():
            box = c["bbox_xyxy"] or ["", "", "", ""]
            writer.writerow([s["image"], s["height"], s["width"], cls, c["area_px"],
                             c["area_fraction"], *box, c["components"]])
    json_name, csv_name = SUMMARY_FILES
    with output_set():  # the two files together, or neither
        write_text(out_dir / json_name, json.dumps(summaries, indent=2))
        write_text(out_dir / csv_name, buf.getvalue())
