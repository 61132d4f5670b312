"""Per-image summaries of predicted masks, readable without Python: summary.json and summary.csv.

For each image and each foreground class: the predicted area (pixels and fraction of the image),
the bounding box of all its pixels ([x0, y0, x1, y1], inclusive, in image pixels) and the number
of connected components (8-connected: pixels touching at a corner belong together, as a person
looking at the mask would count them). Components are counted with a union-find over row runs
in numpy, so no image-processing library is needed.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from .runs import write_text


def _row_runs(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of True in a 1-D bool array, ends exclusive."""
    padded = np.concatenate(([False], row, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges[0::2], edges[1::2]


def count_components(mask: np.ndarray) -> int:
    """The number of 8-connected components of True pixels in a 2-D bool array."""
    parent: list[int] = []

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    prev_starts = prev_ends = prev_ids = None
    for row in mask:
        starts, ends = _row_runs(row)
        ids = np.arange(len(parent), len(parent) + len(starts))
        parent.extend(ids.tolist())
        if prev_starts is not None and len(starts) and len(prev_starts):
            # Runs [s, e) and [ps, pe) touch (8-connectivity) when s <= pe and ps <= e.
            j0 = np.searchsorted(prev_ends, starts, side="left")  # first previous run with pe >= s
            for i, (s, e) in enumerate(zip(starts, ends)):
                j = j0[i]
                while j < len(prev_starts) and prev_starts[j] <= e:
                    a, b = find(int(ids[i])), find(int(prev_ids[j]))
                    if a != b:
                        parent[a] = b
                    j += 1
        prev_starts, prev_ends, prev_ids = starts, ends, ids
    return sum(1 for i in range(len(parent)) if find(i) == i)


def summarize(name: str, labels: np.ndarray, classes: list[str]) -> dict:
    """The summary of one (H, W) class-index mask: one entry per foreground class."""
    h, w = labels.shape
    per_class = {}
    for k, cls in enumerate(classes[1:], start=1):
        mask = labels == k
        area = int(mask.sum())
        box = None
        if area:
            ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = [int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])]
        per_class[cls] = {"area_px": area, "area_fraction": round(area / (h * w), 6),
                          "bbox_xyxy": box, "components": count_components(mask) if area else 0}
    return {"image": name, "height": h, "width": w, "classes": per_class}


def write_summaries(out_dir: str | Path, summaries: list[dict]) -> None:
    """summary.json (a list, one object per image) and summary.csv (one row per image and class)."""
    out_dir = Path(out_dir)
    write_text(out_dir / "summary.json", json.dumps(summaries, indent=2))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "height", "width", "class", "area_px", "area_fraction",
                     "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "components"])
    for s in summaries:
        for cls, c in s["classes"].items():
            box = c["bbox_xyxy"] or ["", "", "", ""]
            writer.writerow([s["image"], s["height"], s["width"], cls, c["area_px"],
                             c["area_fraction"], *box, c["components"]])
    write_text(out_dir / "summary.csv", buf.getvalue())
