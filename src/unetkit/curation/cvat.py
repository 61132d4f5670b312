"""Masks <-> CVAT for images 1.1 XML (https://docs.cvat.ai/docs/other/xml_format/).

The annotation tool chosen is CVAT, and its "CVAT for images 1.1" format, because its masks
round-trip pixel for pixel with a plain, documented encoding: a `<mask>` element holds a
run-length encoding (`rle`: run lengths, starting with a run of background, row by row) of the
mask inside its box (`left`, `top`, `width`, `height`), so nothing is approximated. CVAT uploads
the file as pre-annotations (Actions > Upload annotations > CVAT 1.1) and exports the corrected
masks in the same format. Label Studio's brush masks, the alternative, are an RLE of RGBA
image bytes that needs its converter library to read or write.

As in the COCO files (see coco.py), each connected component of each class is one `<mask>`.
Reading back also accepts `<polygon>` shapes (drawn with CVAT's polygon tool; filled here with
Pillow, whose rasterisation of an outline can differ from CVAT's by a pixel along it). Shapes
are painted in order of `z_order`, then of the file, so the shape on top wins.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unetkit.curation.coco import class_components
from unetkit.curation.errors import LabelError
from unetkit.curation.reading import (
    LabelSet,
    checked_name,
    checked_polygon,
    checked_runs,
    image_size,
    mask_from_runs,
    read_xml,
)

SHAPES = ("mask", "polygon")  # the shapes read back; tags are ignored, other shapes refused


def runs(flat: np.ndarray) -> list[int]:
    """Run lengths of a flat boolean array, the first a run of False (possibly 0)."""
    flat = flat.astype(np.int8)
    cuts = np.flatnonzero(np.diff(flat)) + 1
    out = np.diff(np.concatenate([[0], cuts, [flat.size]])).tolist()
    return [0, *out] if flat[0] else out


def to_cvat(entries: list[tuple[str, np.ndarray]], classes: list[str],
            colors: np.ndarray, name: str = "unetkit pre-labels") -> str:
    """A CVAT for images 1.1 XML document for (file name, (H, W) class-index mask) pairs."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    task = ET.SubElement(ET.SubElement(root, "meta"), "task")
    for key, value in (("id", "0"), ("name", name), ("size", str(len(entries))),
                       ("mode", "annotation"), ("overlap", "0"), ("bugtracker", ""),
                       ("flipped", "False"), ("created", now), ("updated", now)):
        ET.SubElement(task, key).text = value
    labels = ET.SubElement(task, "labels")
    for k, cls in enumerate(classes[1:], 1):
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = cls
        ET.SubElement(label, "color").text = "#{:02x}{:02x}{:02x}".format(*colors[k][:3])
        ET.SubElement(label, "type").text = "mask"
        ET.SubElement(label, "attributes")
    ET.SubElement(root.find("meta"), "dumped").text = now
    for image_id, (file_name, mask) in enumerate(entries):
        h, w = mask.shape
        image = ET.SubElement(root, "image", id=str(image_id), name=file_name, width=str(w),
                              height=str(h))
        for k in range(1, len(classes)):
            for part in class_components(mask, k):
                ys, xs = np.flatnonzero(part.any(1)), np.flatnonzero(part.any(0))
                top, left = int(ys[0]), int(xs[0])
                box = part[top:ys[-1] + 1, left:xs[-1] + 1]
                ET.SubElement(image, "mask", label=classes[k], source="auto", occluded="0",
                              rle=", ".join(map(str, runs(box.ravel()))), left=str(left),
                              top=str(top), width=str(box.shape[1]), height=str(box.shape[0]),
                              z_order="0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def write_cvat(path: str | Path, entries, classes, colors) -> None:
    from unetkit.core.files import write_text

    write_text(path, to_cvat(entries, classes, colors))


def open_cvat(path: str | Path, classes: list[str]) -> LabelSet:
    """A CVAT for images 1.1 XML (or ZIP) file parsed and checked (see reading.py), its masks
    decoded on demand."""
    path = Path(path)
    root = read_xml(path)
    if root.tag != "annotations":
        raise LabelError(f"{path}: no <annotations> root; export the task as 'CVAT for images "
                         "1.1'")
    images = root.findall("image")
    if root.find("track") is not None or not images:
        # CVAT for video 1.1 numbers frames (frame_000000...) and never names the images: its
        # tracks cannot be matched to image files. CVAT for images 1.1 splits them by frame.
        raise LabelError(f"{path}: {'tracks' if root.find('track') is not None else 'no'} "
                         "<image> elements: this is 'CVAT for video 1.1' (or an empty task); "
                         "export the task as 'CVAT for images 1.1', which writes tracks as "
                         "shapes of each image")
    index = {name: k for k, name in enumerate(classes)}
    sizes, shapes = {}, {}
    for image in images:
        name = checked_name(f"{path}", image.get("name"), sizes)
        sizes[name] = image_size(f"{path}: <image> {name}", whole(image.get("width")),
                                 whole(image.get("height")))
        drawn = []
        for order, shape in enumerate(s for s in image if s.tag != "tag"):
            label = shape.get("label")
            if label not in index or index[label] == 0:
                raise LabelError(f"{path}: {name} has a shape labelled '{label}', not a class "
                                 f"of this data set ({', '.join(classes[1:])}); rename the "
                                 "label in CVAT, or give the classes with --classes")
            if shape.tag not in SHAPES:
                raise LabelError(f"{path}: {name} has a <{shape.tag}>; only masks and polygons "
                                 "make masks: convert it to a mask in CVAT")
            z = whole(shape.get("z_order", "0") or "0")
            if z is None:
                raise LabelError(f"{path}: a <{shape.tag}> of {name} has z_order "
                                 f"{shape.get('z_order')!r}, not a whole number; export the "
                                 "task again")
            drawn.append((z, order, index[label], shape))
        shapes[name] = [(k, shape) for *_, k, shape in sorted(drawn, key=lambda d: d[:2])]

    def decode(name: str) -> np.ndarray:
        w, h = sizes[name]
        mask = np.zeros((h, w), np.uint8)
        for k, shape in shapes[name]:  # by z_order, then the file's order: the top one wins
            top, left, box = shape_mask(path, name, shape, h, w)
            mask[top:top + box.shape[0], left:left + box.shape[1]][box] = k
        return mask

    return LabelSet(path, sizes, decode)


def whole(text) -> int | None:
    """An attribute that should hold a whole number, or None."""
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def read_cvat(path: str | Path, classes: list[str]) -> dict[str, np.ndarray]:
    """{image name: (H, W) class-index mask} from a CVAT for images 1.1 XML (or ZIP) file."""
    labels = open_cvat(path, classes)
    return {name: labels.mask(name) for name in labels.sizes}


def shape_mask(path: Path, name: str, shape, h: int, w: int) -> tuple[int, int, np.ndarray]:
    """(top, left, boolean mask of the box there) of one <mask> or <polygon> in an (h, w) image:
    a <mask> costs its box, not the image."""
    where = f"{path}: a <{shape.tag}> of {name}"
    if shape.tag == "polygon":
        try:
            coords = [float(v) for p in shape.get("points").split(";") for v in p.split(",")]
        except (AttributeError, ValueError):
            raise LabelError(f"{where} has points {shape.get('points')!r}, not 'x,y;x,y;...'; "
                             "export the task again") from None
        points = checked_polygon(where, coords, w, h)
        img = Image.new("1", (w, h))
        ImageDraw.Draw(img).polygon([tuple(p) for p in points], fill=1, outline=1)
        return 0, 0, np.asarray(img, bool)
    left, top = whole(shape.get("left")), whole(shape.get("top"))
    bw, bh = whole(shape.get("width")), whole(shape.get("height"))
    if None in (left, top, bw, bh) or bw < 1 or bh < 1:
        raise LabelError(f"{where} has a box {shape.get('width')!r}x{shape.get('height')!r} at "
                         f"{shape.get('left')!r},{shape.get('top')!r}, not a box of whole "
                         "pixels; export the task again")
    if left < 0 or top < 0 or left + bw > w or top + bh > h:
        raise LabelError(f"{where} ({bw}x{bh} at {left},{top}) lies outside the {w}x{h} image; "
                         "annotate the image at its own size")
    counts = [whole(v) for v in (shape.get("rle") or "").split(",")]
    if None in counts:
        raise LabelError(f"{where} has an rle that is not whole numbers separated by commas; "
                         "export the task again")
    return top, left, mask_from_runs(checked_runs(where, counts, bw * bh), bh, bw,
                                     column_major=False)
