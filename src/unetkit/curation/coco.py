"""Masks <-> COCO JSON with RLE masks (pycocotools' own encoder and decoder).

One annotation per connected component (8-connected, as `summary.count_components` counts) of
each class per image: each polyp is an object a curator can select, delete or relabel on its
own, and a detector's evaluation counts polyps, not images. The components of a class are
disjoint, so their union is the class's mask again, pixel for pixel. Segmentations are
compressed RLE (`{"size": [h, w], "counts": "..."}`), `iscrowd` 0, with `area` and `bbox`
([x, y, width, height]) from pycocotools. Categories are the foreground classes, ids 1..K-1 in
the order of `data.classes` (0, background, is no category).

Reading back accepts what annotation tools write in COCO files: compressed or uncompressed RLE
and polygons. Annotations are painted in the file's order, so where two overlap the later one
wins (as tools draw the later object on top).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unetkit.curation.errors import LabelError
from unetkit.curation.measures import EIGHT
from unetkit.curation.reading import (
    LabelSet,
    checked_name,
    checked_polygon,
    checked_runs,
    coco_string_counts,
    image_size,
    is_int,
    mask_from_runs,
    read_json,
)


def require_pycocotools():
    from unetkit.core.extras import require

    return require("pycocotools.mask", "curation", "COCO import and export")


def class_components(labels: np.ndarray, k: int) -> list[np.ndarray]:
    """The 8-connected components of class `k` of an (H, W) class map, as boolean masks."""
    from scipy import ndimage

    labelled, n = ndimage.label(labels == k, structure=EIGHT)
    return [labelled == i for i in range(1, n + 1)]


def to_coco(entries: list[tuple[str, np.ndarray]], classes: list[str]) -> dict:
    """A COCO dict for (file name, (H, W) class-index mask) pairs."""
    mask_utils = require_pycocotools()
    images, annotations = [], []
    for image_id, (name, labels) in enumerate(entries, 1):
        h, w = labels.shape
        images.append({"id": image_id, "file_name": name, "width": int(w), "height": int(h)})
        for k in range(1, len(classes)):
            for part in class_components(labels, k):
                rle = mask_utils.encode(np.asfortranarray(part.astype(np.uint8)))
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id, "category_id": k,
                    "segmentation": {"size": [int(h), int(w)],
                                     "counts": rle["counts"].decode("ascii")},
                    "area": int(mask_utils.area(rle)),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
    categories = [{"id": k, "name": name, "supercategory": "object"}
                  for k, name in enumerate(classes) if k > 0]
    return {"info": {"description": "unetkit masks", "version": "1.0"}, "licenses": [],
            "images": images, "annotations": annotations, "categories": categories}


def write_coco(path: str | Path, entries: list[tuple[str, np.ndarray]], classes: list[str]):
    from unetkit.core.files import write_text

    write_text(path, json.dumps(to_coco(entries, classes)))


def open_coco(path: str | Path, classes: list[str]) -> LabelSet:
    """A COCO file parsed and checked (see reading.py), its masks decoded on demand."""
    path = Path(path)
    data = read_json(path)
    fix = "export it again as COCO 1.0 (images, annotations, categories)"
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("categories"), list) \
            or not isinstance(data.get("annotations", []), list):
        raise LabelError(f"{path}: not a COCO annotation file (needs lists 'images', "
                         f"'annotations' and 'categories'); {fix}")
    categories = {}
    for c in data["categories"]:
        if not (isinstance(c, dict) and is_int(c.get("id")) and isinstance(c.get("name"), str)):
            raise LabelError(f"{path}: a category {str(c)[:80]} lacks a whole-number id or a "
                             f"name; {fix}")
        categories[c["id"]] = c["name"]
    unknown = sorted(set(categories.values()) - set(classes[1:]))
    if unknown:
        raise LabelError(f"{path}: categories {unknown} are not classes of this data set "
                         f"({', '.join(classes[1:])}); rename them in the tool, or give the "
                         "classes with --classes")
    by_id, sizes = {}, {}
    for im in data["images"]:
        if not isinstance(im, dict) or not isinstance(im.get("id"), (int, str)):
            raise LabelError(f"{path}: an image {str(im)[:80]} lacks an id; {fix}")
        name = checked_name(f"{path}", im.get("file_name"), sizes)
        sizes[name] = image_size(f"{path}: image {name}", im.get("width"), im.get("height"))
        by_id[im["id"]] = name
    if not sizes:
        raise LabelError(f"{path}: no images in the file; export the task with its images")
    anns: dict[str, list[dict]] = {name: [] for name in sizes}
    for ann in data.get("annotations", []):
        if not isinstance(ann, dict) or ann.get("image_id") not in by_id \
                or ann.get("category_id") not in categories or "segmentation" not in ann:
            raise LabelError(f"{path}: annotation {str(ann)[:80]} names no image or category "
                             f"of the file, or has no segmentation; {fix}")
        anns[by_id[ann["image_id"]]].append(ann)
    index = {name: k for k, name in enumerate(classes)}

    def decode(name: str) -> np.ndarray:
        w, h = sizes[name]
        mask = np.zeros((h, w), np.uint8)
        for ann in anns[name]:  # in the file's order: the later one is on top
            mask[segmentation(path, name, ann, h, w)] = index[categories[ann["category_id"]]]
        return mask

    return LabelSet(path, sizes, decode)


def segmentation(path: Path, name: str, ann: dict, h: int, w: int) -> np.ndarray:
    """The (h, w) boolean mask of one annotation: RLE (compressed or not) or polygons."""
    where = f"{path}: annotation {ann.get('id')!r} of {name}"
    segm = ann["segmentation"]
    if isinstance(segm, dict):
        size = segm.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(is_int(v) for v in size)):
            raise LabelError(f"{where}: RLE size {size!r} is not [height, width]; export the "
                             "file again")
        if list(size) != [h, w]:
            raise LabelError(f"{where}: is {size[1]}x{size[0]} but the image is {w}x{h}; "
                             "annotate the image at its own size")
        counts = segm.get("counts")
        if not isinstance(counts, list):  # compressed
            counts = coco_string_counts(where, counts)
        return mask_from_runs(checked_runs(where, counts, h * w), h, w, column_major=True)
    if not isinstance(segm, list) or not segm:
        raise LabelError(f"{where}: a segmentation must be RLE or a list of polygons; export "
                         "the file again")
    polygons = [checked_polygon(where, poly, w, h).ravel().tolist() for poly in segm]
    mask_utils = require_pycocotools()
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))) \
        .astype(bool)


def read_coco(path: str | Path, classes: list[str]) -> dict[str, np.ndarray]:
    """{file name: (H, W) class-index mask} from a COCO file; `LabelError` names what is wrong."""
    labels = open_coco(path, classes)
    return {name: labels.mask(name) for name in labels.sizes}
