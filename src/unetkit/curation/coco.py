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


def require_pycocotools():
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        raise ImportError("COCO files need pycocotools: pip install 'unetkit[curation]'") from None
    return mask_utils


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


def read_coco(path: str | Path, classes: list[str]) -> dict[str, np.ndarray]:
    """{file name: (H, W) class-index mask} from a COCO file; `LabelError` names what is wrong."""
    mask_utils = require_pycocotools()
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        images, annotations = data["images"], data.get("annotations", [])
        categories = {c["id"]: c["name"] for c in data["categories"]}
        by_id = {im["id"]: (im["file_name"], int(im["height"]), int(im["width"])) for im in images}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
            ValueError) as exc:
        raise LabelError(f"{path}: not a COCO annotation file ({type(exc).__name__}: {exc}); "
                         "export it again as COCO 1.0 (images, annotations, categories)") from None
    unknown = sorted(set(categories.values()) - set(classes[1:]))
    if unknown:
        raise LabelError(f"{path}: categories {unknown} are not classes of this data set "
                         f"({', '.join(classes[1:])}); rename them in the tool, or give the "
                         "classes with --classes")
    index = {name: k for k, name in enumerate(classes)}
    masks = {name: np.zeros((h, w), np.uint8) for name, h, w in by_id.values()}
    for ann in annotations:
        try:
            name, h, w = by_id[ann["image_id"]]
            k = index[categories[ann["category_id"]]]
            segm = ann["segmentation"]
            if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
                rle = mask_utils.frPyObjects(segm, *segm["size"])  # uncompressed RLE
            elif isinstance(segm, dict):
                rle = {"size": segm["size"], "counts": segm["counts"].encode("ascii")}
            else:  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
            if list(rle["size"]) != [h, w]:
                raise LabelError(f"{path}: annotation {ann.get('id')} of {name} is "
                                 f"{rle['size'][1]}x{rle['size'][0]} but the image is {w}x{h}; "
                                 "annotate the image at its own size")
            part = mask_utils.decode(rle).astype(bool)
        except LabelError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise LabelError(f"{path}: annotation {ann.get('id') if isinstance(ann, dict) else ann}"
                             f" cannot be read ({type(exc).__name__}: {exc}); export the file "
                             "again from the tool") from None
        masks[name][part] = k
    return masks
