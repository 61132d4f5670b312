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
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unetkit.curation.coco import class_components
from unetkit.curation.errors import LabelError

SHAPES = ("mask", "polygon")  # the shapes read back; tags are ignored, other shapes refused


def runs(flat: np.ndarray) -> list[int]:
    """Run lengths of a flat boolean array, the first a run of False (possibly 0)."""
    flat = flat.astype(np.int8)
    cuts = np.flatnonzero(np.diff(flat)) + 1
    out = np.diff(np.concatenate([[0], cuts, [flat.size]])).tolist()
    return [0, *out] if flat[0] else out


def unruns(counts: list[int], size: int) -> np.ndarray:
    """The flat boolean array of run lengths (first run False)."""
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts)[:size]


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


def parse_xml(path: Path) -> ET.Element:
    """The root of a CVAT XML file, or of annotations.xml inside a CVAT export ZIP."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return ET.fromstring(z.read("annotations.xml"))
        return ET.parse(path).getroot()
    except (OSError, KeyError, ET.ParseError, zipfile.BadZipFile) as exc:
        raise LabelError(f"{path}: not a CVAT for images 1.1 file ({type(exc).__name__}: "
                         f"{exc}); export the task again as 'CVAT for images 1.1'") from None


def read_cvat(path: str | Path, classes: list[str]) -> dict[str, np.ndarray]:
    """{image name: (H, W) class-index mask} from a CVAT for images 1.1 XML (or ZIP) file."""
    path = Path(path)
    root = parse_xml(path)
    if root.tag != "annotations" or root.find("image") is None and root.find("meta") is None:
        raise LabelError(f"{path}: no <annotations> with <image> elements; export the task as "
                         "'CVAT for images 1.1' (not 'CVAT for video')")
    index = {name: k for k, name in enumerate(classes)}
    masks = {}
    for image in root.iter("image"):
        try:
            name, w, h = image.get("name"), int(image.get("width")), int(image.get("height"))
        except (TypeError, ValueError):
            raise LabelError(f"{path}: an <image> lacks name, width or height "
                             f"({image.attrib}); export the task again") from None
        mask = np.zeros((h, w), np.uint8)
        shapes = [s for s in image if s.tag != "tag"]
        shapes.sort(key=lambda s: int(s.get("z_order", "0") or 0))  # stable: file order kept
        for shape in shapes:
            label = shape.get("label")
            if label not in index or index[label] == 0:
                raise LabelError(f"{path}: {name} has a shape labelled '{label}', not a class of "
                                 f"this data set ({', '.join(classes[1:])}); rename the label "
                                 "in CVAT, or give the classes with --classes")
            if shape.tag not in SHAPES:
                raise LabelError(f"{path}: {name} has a <{shape.tag}>; only masks and polygons "
                                 "make masks: convert it to a mask in CVAT")
            mask[shape_mask(path, name, shape, h, w)] = index[label]
        masks[name] = mask
    return masks


def shape_mask(path: Path, name: str, shape: ET.Element, h: int, w: int) -> np.ndarray:
    """The (h, w) boolean mask of one <mask> or <polygon>."""
    try:
        if shape.tag == "polygon":
            points = [tuple(float(v) for v in p.split(",")) for p in
                      shape.get("points").split(";")]
            img = Image.new("1", (w, h))
            ImageDraw.Draw(img).polygon(points, fill=1, outline=1)
            return np.asarray(img, bool)
        left, top = int(shape.get("left")), int(shape.get("top"))
        bw, bh = int(shape.get("width")), int(shape.get("height"))
        counts = [int(v) for v in shape.get("rle").split(",")]
    except (AttributeError, TypeError, ValueError):
        raise LabelError(f"{path}: a <{shape.tag}> of {name} cannot be read ({shape.attrib}); "
                         "export the task again") from None
    if sum(counts) != bw * bh or min(counts, default=0) < 0:
        raise LabelError(f"{path}: a <mask> of {name} has runs adding up to {sum(counts)} "
                         f"pixels for a {bw}x{bh} box; export the task again")
    if left < 0 or top < 0 or left + bw > w or top + bh > h:
        raise LabelError(f"{path}: a <mask> of {name} ({bw}x{bh} at {left},{top}) lies outside "
                         f"the {w}x{h} image; annotate the image at its own size")
    out = np.zeros((h, w), bool)
    out[top:top + bh, left:left + bw] = unruns(counts, bw * bh).reshape(bh, bw)
    return out
