"""Pre-labels out to an annotation tool, corrected labels back in as a mask folder.

Out: masks (a data set's own, or a model's predictions) as COCO JSON with RLE masks (see
coco.py: one annotation per connected component of each class) or as CVAT for images 1.1 XML
(see cvat.py for why CVAT: its masks round-trip pixel for pixel). The format follows the file's
suffix: `.json` is COCO, `.xml` is CVAT.

In: `import_labels(export_file, image_dir, out_mask_dir, classes)` reads a COCO file or a CVAT
XML (or the ZIP CVAT exports) and writes one mask per annotated image, `<image stem>.png`, in
the data set's own encoding, so unetkit trains on the folder as it did on the original
(`--set data.masks=DIR`): 0/255 grey PNG for binary masks, the declared `class_colors` as an RGB
PNG for colour masks (NeoPolyp), class indices otherwise. An annotated image with no shape is
all background. It never writes into the original masks: an `out_mask_dir` that is, or lies
inside, the source mask folder or the image folder is refused, and so is any existing file it
would replace. Every problem is a `LabelError` naming the file and the fix.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from unetkit.config.rules import MAX_CLASSES
from unetkit.core.files import check_outputs, output_set, write_bytes
from unetkit.core.text import plural
from unetkit.curation.coco import open_coco, write_coco
from unetkit.curation.cvat import open_cvat, write_cvat
from unetkit.curation.errors import LabelError
from unetkit.curation.reading import LabelSet, is_int
from unetkit.data.folders import LAYOUTS, DataError, list_images
from unetkit.io.budget import ImageError
from unetkit.io.images import MaskDecoder, check_pixel_budget, read_checked_mask
from unetkit.io.plots import class_palette, color_mask, save_png

FORMATS = {".json": "coco", ".xml": "cvat", ".zip": "cvat"}


def label_format(path: str | Path, format: str | None = None) -> str:
    if format:
        if format not in ("coco", "cvat"):
            raise LabelError(f"unknown label format '{format}'; use coco or cvat")
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise LabelError(f"{path}: cannot tell the format from '{suffix}'; name the file .json "
                         "(COCO) or .xml (CVAT for images 1.1), or give the format")
    return FORMATS[suffix]


def export_labels(entries: list[tuple[str, np.ndarray]], out_file: str | Path,
                  classes: list[str], colors=None, format: str | None = None) -> Path:
    """Write (image file name, (H, W) class-index mask) pairs as COCO or CVAT pre-labels."""
    out_file = Path(out_file)
    fmt = label_format(out_file, format)
    check_classes(classes)
    if not entries:
        raise LabelError(f"{out_file}: no images to export; give images (and --stems that "
                         "name some of them)")
    check_names([name for name, _ in entries])
    if fmt == "coco":
        write_coco(out_file, entries, classes)
    else:
        write_cvat(out_file, entries, classes, class_palette(len(classes), colors))
    return out_file


def check_names(names: list[str], paths: list[Path] | None = None) -> None:
    """File names a label file can hold: text (no control character, no undecodable byte, which
    XML cannot hold and no tool matches), and distinct stems: the files name images by file name
    alone, and import writes `<stem>.png` (two `x.png` of two folders would merge or drop)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        shown = paths[i] if paths else name
        bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cs") or c in "\ufffe\uffff"]
        if bad:
            raise LabelError(f"{str(shown)!r}: a control character or undecodable byte "
                             f"({bad[0]!r}) in the file name; rename the file")
        stem = Path(name).stem
        if stem in seen:
            first = paths[seen[stem]] if paths else names[seen[stem]]
            raise LabelError(f"{first} and {shown} share the name '{stem}': a label file names "
                             "images by file name alone; export each folder to its own file, "
                             "or rename one")
        seen[stem] = i


def masks_from_folder(image_dir, mask_dir, decoder: MaskDecoder,
                      stems: list[str] | None = None, progress: bool = True
                      ) -> list[tuple[str, np.ndarray]]:
    """(image file name, class-index mask) for the images of a data set with masks, optionally
    only `stems` (e.g. the flagged.txt of an audit)."""
    images, masks = list_images(Path(image_dir)), list_images(Path(mask_dir))
    chosen = list(images) if stems is None else [s for s in stems if s in images]
    missing = [s for s in (stems or []) if s not in images]
    if missing:
        raise LabelError(f"{image_dir}: no images for {missing[:3]} "
                         f"({plural(len(missing), 'stem')}); "
                         "check the list of stems belongs to this data set")
    out = []
    for stem in tqdm(chosen, desc="reading masks", disable=not progress, leave=False):
        if stem not in masks:
            raise LabelError(f"{images[stem]}: no mask '{stem}.*' in {mask_dir}")
        try:
            w, h = check_pixel_budget(images[stem])
        except ImageError as exc:
            raise LabelError(str(exc)) from None
        mask = read_checked_mask(masks[stem], decoder)  # as check-data reads it
        if mask.shape != (h, w):  # the label file declares the image's size: they must agree
            raise LabelError(f"{masks[stem]}: the mask is {mask.shape[1]}x{mask.shape[0]} but "
                             f"its image {images[stem]} is {w}x{h}; give masks at their "
                             "images' size")
        out.append((images[stem].name, mask))
    return out


def open_labels(export_file: str | Path, classes: list[str],
                format: str | None = None) -> LabelSet:
    """A COCO or CVAT file parsed and checked, its masks decoded on demand (reading.LabelSet)."""
    path = Path(export_file)
    if not path.exists():
        raise LabelError(f"{path}: no such label file; give the file the tool exported")
    if not path.is_file():
        raise LabelError(f"{path}: not a regular file (a folder, FIFO or device); give the "
                         "file the tool exported")
    check_classes(classes)
    fmt = label_format(path, format)
    return open_coco(path, classes) if fmt == "coco" else open_cvat(path, classes)


def read_labels(export_file: str | Path, classes: list[str],
                format: str | None = None) -> dict[str, np.ndarray]:
    """{image name: (H, W) class-index mask} from a COCO or CVAT file."""
    labels = open_labels(export_file, classes, format)
    return {name: labels.mask(name) for name in labels.sizes}


def check_classes(classes: list[str]) -> None:
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise LabelError(f"classes {classes}: give background first, then each class once")
    if len(classes) > MAX_CLASSES:
        raise LabelError(f"{len(classes)} classes: at most {MAX_CLASSES}, background included "
                         "(masks hold one byte per pixel)")


def check_colors(colors, classes: list[str]) -> None:
    """One distinct R,G,B (each 0..255) per class: two equal colours would make two classes
    one (a mask of black on black)."""
    if len(colors) != len(classes):
        raise LabelError(f"{len(colors)} colours for {len(classes)} classes "
                         f"({', '.join(classes)}); give one R,G,B per class")
    for cls, c in zip(classes, colors, strict=True):
        if len(c) != 3 or not all(is_int(v) and 0 <= v <= 255 for v in c):
            raise LabelError(f"the colour of {cls}, {','.join(map(str, c))}, is not R,G,B with "
                             "each value 0..255")
    seen = {}
    for cls, c in zip(classes, colors, strict=True):
        if tuple(c) in seen:
            raise LabelError(f"{seen[tuple(c)]} and {cls} have the same colour "
                             f"{','.join(map(str, c))}; give each class its own colour")
        seen[tuple(c)] = cls


def source_mask_dir(image_dir: Path) -> Path | None:
    """The mask folder beside an image folder in a known layout (data.py's LAYOUTS)."""
    for images, masks, _ in LAYOUTS.values():
        if image_dir.name == images and (image_dir.parent / masks).is_dir():
            return image_dir.parent / masks
    return None


def check_destination(out_dir: Path, protected: list[Path]) -> None:
    real = out_dir.resolve()
    for folder in protected:
        if real == folder.resolve() or real.is_relative_to(folder.resolve()):
            raise LabelError(f"{out_dir} is {'' if real == folder.resolve() else 'inside '}"
                             f"{folder}: imported masks never replace the originals; choose a "
                             "new folder, e.g. masks-curated beside it")


def encode(mask: np.ndarray, encoding: str, palette: np.ndarray) -> np.ndarray:
    if encoding == "binary":
        return (mask > 0).astype(np.uint8) * 255
    if encoding == "color":
        return color_mask(mask, palette)
    return mask


def import_labels(export_file, image_dir, out_mask_dir, classes: list[str], colors=None,
                  mask_dir=None, encoding: str | None = None, format: str | None = None,
                  keep_others: bool = False, progress: bool = True) -> dict:
    """Write the masks of a tool's export into a new folder (see the module's docstring).

    `classes`: background first. `colors`: the data set's `class_colors` (colour masks);
    `encoding`: binary, color or index (default: color with `colors`, binary for two classes,
    else index). `mask_dir`: the original mask folder (default: the one beside `image_dir` in
    a known layout). `keep_others`: copy the original masks of the images the export does not
    annotate, byte for byte, so that the new folder is a complete mask folder to retrain on.
    Returns {"written": n, "kept": n copied, "out": folder, "not_annotated": [stems]}."""
    image_dir, out_dir = Path(image_dir), Path(out_mask_dir)
    encoding = encoding or ("color" if colors else "binary" if len(classes) == 2 else "index")
    if encoding == "color" and not colors:
        raise LabelError("colour masks need the class colours (--colors or data.class_colors)")
    source = Path(mask_dir) if mask_dir else source_mask_dir(image_dir)
    protected = [image_dir] + ([source] if source else [])
    check_destination(out_dir, protected)
    check_outputs([], inputs=[Path(export_file)], input_dirs=protected, folders=[out_dir])
    if keep_others and not (source and source.is_dir()):
        raise LabelError(f"{image_dir}: no mask folder beside it to keep the other masks from; "
                         "name it (--masks DIR)")
    if colors:
        check_colors(colors, classes)
    labels = open_labels(export_file, classes, format)
    try:
        images = list_images(image_dir)
    except DataError as exc:
        raise LabelError(str(exc)) from None
    unknown = [n for n in labels.sizes if Path(n).stem not in images]
    if unknown:
        raise LabelError(f"{export_file}: {len(unknown)} annotated images are not in "
                         f"{image_dir} (first: {unknown[:3]}); give the image folder the task "
                         "was made from")
    planned = {}
    for name, (w, h) in labels.sizes.items():  # declared sizes vs the images' headers first
        stem = Path(name).stem
        if stem in planned:
            raise LabelError(f"{export_file}: two annotated images share the stem '{stem}'")
        try:
            size = check_pixel_budget(images[stem])
        except ImageError as exc:
            raise LabelError(str(exc)) from None
        if (w, h) != size:
            raise LabelError(f"{export_file}: the mask of {name} is {w}x{h} but {images[stem]} "
                             f"is {size[0]}x{size[1]}; annotate the image at its own size (no "
                             "resized copies in the task)")
        planned[stem] = out_dir / f"{stem}.png"
    for name in tqdm(labels.sizes, desc="checking labels", disable=not progress, leave=False):
        labels.mask(name)  # every annotation decodes before a mask is written (one at a time)
    kept = {}
    if keep_others:
        originals = list_images(source)
        kept = {stem: originals[stem] for stem in sorted(set(images) - set(planned))
                if stem in originals}
    targets = list(planned.values()) + [out_dir / p.name for p in kept.values()]
    check_outputs([(p, "the imported masks") for p in targets], inputs=[Path(export_file)],
                  input_dirs=protected)
    there = list_images(out_dir) if out_dir.is_dir() else {}  # x.jpg beside a new x.png
    existing = [str(p) for p in targets if p.exists() or p.is_symlink()] + \
        [str(there[Path(p).stem]) for p in targets if Path(p).stem in there]
    if existing:
        raise LabelError(f"{out_dir}: {plural(len(existing), 'mask')} already exist (first: "
                         f"{existing[0]}); import into a new folder, or delete them first")
    palette = class_palette(len(classes), colors)
    with output_set():  # every mask, or none
        for name in tqdm(labels.sizes, desc="writing masks", disable=not progress, leave=False):
            save_png(planned[Path(name).stem], encode(labels.mask(name), encoding, palette))
        for path in kept.values():
            write_bytes(out_dir / path.name, path.read_bytes())
    return {"written": len(planned), "kept": len(kept), "out": str(out_dir),
            "not_annotated": sorted(set(images) - set(planned))}


def export_predictions(run_dir, inputs: list[str], out_file, format: str | None = None,
                       stems: list[str] | None = None, device: str | None = None,
                       progress: bool = True, **predictor_kwargs) -> Path:
    """A run's predictions on image files or folders as pre-labels (COCO or CVAT)."""
    from unetkit.inference.predict import collect_inputs
    from unetkit.inference.predictor import Predictor

    predictor = Predictor.from_run(run_dir, device, **predictor_kwargs)
    files = collect_inputs(inputs)
    if stems is not None:
        found = {f.stem for f in files}
        missing = [s for s in stems if s not in found]
        if missing:
            raise LabelError(f"{len(missing)} of the {len(stems)} stems name no input image "
                             f"(first: {missing[:3]}); check the list of stems belongs to "
                             f"{', '.join(inputs)}")
        wanted = set(stems)
        files = [f for f in files if f.stem in wanted]
    if not files:
        raise LabelError(f"{', '.join(inputs)}: no images to export")
    check_names([f.name for f in files], files)  # before a minute is spent predicting
    entries = []
    for path in tqdm(files, desc="predicting", unit="image", disable=not progress):
        entries.append((path.name, predictor.predict([predictor.read(path)])[0]))
    cfg = predictor.cfg
    return export_labels(entries, out_file, cfg.data.classes, cfg.data.class_colors, format)
