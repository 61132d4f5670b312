"""Command-line pieces of data curation, for `unetkit audit`, `unetkit import-labels` and
`unetkit predict --format coco|cvat` (see docs/curation.md):

    add_audit_arguments(parser)  / run_audit(args)
    add_import_arguments(parser) / run_import(args)
    add_export_arguments(parser) / run_export(args)   (added to `predict`'s own arguments)

Each `run_*` returns the exit status, 0 on success; errors are `ValueError`s (DataError,
ConfigError, OutputError, RunError) with messages that name the file and the fix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unetkit.cli.options import config_args, device_arg
from unetkit.core.text import plural

SPLIT_NAMES = ("train", "val", "test")


def _config_error(message: str) -> Exception:
    """A ConfigError; the configuration is imported when a command runs, not to parse it."""
    from unetkit.config import ConfigError

    return ConfigError(message)


def _config(args):
    from unetkit import config as config_mod

    if not (args.recipe or args.config):
        return None if not args.overrides else config_mod.load(overrides=args.overrides)
    return config_mod.load(args.recipe, args.config, args.overrides)


def add_audit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="the data folder to audit (images + masks)")
    p.add_argument("predictions", nargs="?",
                   help="a run or ensemble folder, or a folder of probability maps "
                        "(`unetkit predict RUN IMAGES --probs`); omit with --folds")
    p.add_argument("--out", required=True, help="the folder for audit.csv, audit.html, ...")
    p.add_argument("--folds", type=int, metavar="K",
                   help="train K fold models (--recipe/--config) so that each image is judged "
                        "by a model that did not train on it")
    p.add_argument("--folds-dir", help="where the fold runs go (default: OUT/folds); finished "
                                       "folds there are reused")
    config_args(p, required=False)  # the data's recipe: layout, classes, mask encoding
    p.add_argument("--top", type=int, default=40, help="images shown on the page (default 40)")
    p.add_argument("--split", dest="splits", action="append", default=[],
                   metavar="NAME|FILE|NAME=FILE",
                   help="a split for near-duplicates across splits (repeatable): train, val or "
                        "test of the config's split, a file of stems (named after the file), or "
                        "NAME=FILE (default: the config's split)")
    p.add_argument("--stems", help="audit only the images of this file of stems")
    p.add_argument("--hash-distance", type=int, default=None,
                   help="near-duplicates: at most this many of 64 bits differ in both the phash "
                        "and the dhash (default 4)")
    p.add_argument("--threshold", type=float, help="probability threshold of a binary model")
    device_arg(p)


def audit_splits(specs: list[str], data: Path) -> dict[str, Path | None]:
    """--split NAME (train, val, test: the config's split), FILE (named after the file) or
    NAME=FILE -> {name: stems file, or None for the config's own split}. A relative FILE not
    found from here is looked for in the data folder."""
    splits: dict[str, Path | None] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if sep and (not name or not file):
            raise _config_error(f"--split {spec}: give NAME=FILE, e.g. "
                                         "test=splits/pranet-test.txt")
        if not sep and spec in SPLIT_NAMES:
            splits[spec] = None
            continue
        file = file if sep else spec
        path = Path(file) if Path(file).is_absolute() or Path(file).exists() else data / file
        splits[name if sep else path.stem] = path
    return splits


def run_audit(args) -> int:
    from unetkit.core.extras import require

    for module in ("scipy", "imagehash"):  # before anything is imported that needs them
        require(module, "curation", "unetkit audit")
    from unetkit.curation.audit import audit
    from unetkit.curation.duplicates import HASH_DISTANCE
    from unetkit.data.folders import read_stems

    splits = audit_splits(args.splits, Path(args.data))
    stems = read_stems(Path(args.stems)) if args.stems else None
    result = audit(args.data, args.predictions, args.out, cfg=_config(args), folds=args.folds,
                   folds_dir=args.folds_dir, stems=stems, splits=splits or None, top=args.top,
                   threshold=args.threshold,
                   hash_distance=HASH_DISTANCE if args.hash_distance is None
                   else args.hash_distance,
                   device=args.device, progress=not getattr(args, "quiet", False))
    rows = result["rows"]
    print(f"audited {plural(len(rows), 'image')}; most suspicious:")
    for row in rows[:5]:
        print(f"  {row['rank']:>3} {row['image']}  {row['suspicion']:.2f}  {row['reasons']}")
    return 0


def add_import_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("export", help="the tool's export: COCO .json, or CVAT for images 1.1 .xml "
                                  "or .zip")
    p.add_argument("--images", required=True, help="the folder of the annotated images")
    p.add_argument("--out", required=True,
                   help="a NEW folder for the masks (never the original mask folder)")
    p.add_argument("--masks", help="the original mask folder, protected (default: the one "
                                   "beside --images in a known layout)")
    config_args(p, required=False)  # the data's recipe: layout, classes, mask encoding
    p.add_argument("--classes", help="class names, background first, comma-separated (default: "
                                     "the recipe's, or background,polyp)")
    p.add_argument("--colors", help="colour masks: R,G,B per class, ';'-separated, e.g. "
                                    "'0,0,0;255,0,0;0,255,0' (default: the recipe's)")
    p.add_argument("--format", choices=("coco", "cvat"), help="default: from the suffix")
    p.add_argument("--keep-others", action="store_true",
                   help="also copy the original masks of the images the export lacks, so that "
                        "--out is a complete mask folder to retrain on")


def _classes_colors(args) -> tuple[list[str], list[list[int]] | None, str | None]:
    cfg = _config(args)
    classes = cfg.data.classes if cfg else ["background", "polyp"]
    colors = cfg.data.class_colors if cfg and cfg.data.mask_encoding == "color" else None
    encoding = cfg.data.mask_encoding if cfg else None
    if args.classes:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    if args.colors:
        from unetkit.curation.labels import check_colors

        try:
            colors = [[int(v) for v in c.split(",")] for c in args.colors.split(";")]
        except ValueError:
            raise _config_error(f"--colors {args.colors}: give R,G,B per class, "
                                         "';'-separated") from None
        encoding = "color"
        try:
            check_colors(colors, classes)
        except ValueError as exc:
            raise _config_error(f"--colors {args.colors}: {exc}") from None
    return classes, colors, encoding


def run_import(args) -> int:
    from unetkit.curation.labels import import_labels

    classes, colors, encoding = _classes_colors(args)
    r = import_labels(args.export, args.images, args.out, classes, colors, mask_dir=args.masks,
                      encoding=encoding, format=args.format, keep_others=args.keep_others,
                      progress=not getattr(args, "quiet", False))
    kept = f", kept the original masks of {r['kept']} others" if args.keep_others else \
        f" ({plural(len(r['not_annotated']), 'image')} of {args.images} were not in the export)"
    print(f"wrote {r['written']} masks to {r['out']}{kept}; train on them with --set "
          f"data.images={Path(args.images).resolve()} --set data.masks="
          f"{Path(r['out']).resolve()}")
    return 0


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """For `unetkit predict RUN INPUT... --out FILE --format coco|cvat`."""
    p.add_argument("--format", choices=("masks", "coco", "cvat"), default="masks",
                   help="masks (PNG files, the default), or pre-labels for an annotation tool: "
                        "coco (JSON, RLE masks) or cvat (CVAT for images 1.1 XML) in --out")
    p.add_argument("--stems", help="only the images of this file of stems (e.g. an audit's "
                                   "flagged.txt)")
    p.add_argument("--label-masks", dest="label_masks", metavar="MASK_DIR",
                   help="export these masks (decoded as the run's data config says) instead of "
                        "the run's predictions, e.g. the flagged masks to correct")


def export_path(out: str, fmt: str) -> Path:
    """--out as a file: itself when it has the format's suffix, else a file inside it."""
    path = Path(out)
    suffixes = {"coco": (".json",), "cvat": (".xml",)}[fmt]
    if path.suffix.lower() in suffixes:
        return path
    return path / ("labels.json" if fmt == "coco" else "annotations.xml")


def run_export(args) -> int:
    from unetkit.core.files import check_outputs
    from unetkit.curation.labels import export_labels, export_predictions, masks_from_folder
    from unetkit.data.folders import read_stems
    from unetkit.io.images import MaskDecoder
    from unetkit.runs.check import run_config

    if args.format == "masks":
        raise _config_error("run_export writes --format coco or cvat; masks are "
                                     "predict's own output")
    out = export_path(args.out, args.format)
    read = [Path(i) for i in args.inputs] + [Path(p) for p in (args.stems,) if p]
    mask_dir = getattr(args, "label_masks", None)
    check_outputs([(out, "the pre-labels")], inputs=[p for p in read if not p.is_dir()],
                  input_dirs=[p for p in read if p.is_dir()] + ([Path(mask_dir)] if mask_dir
                                                                else []),
                  run_dirs=[Path(args.run_dir)] if Path(args.run_dir).is_dir() else [])
    stems = read_stems(Path(args.stems)) if args.stems else None
    progress = not getattr(args, "quiet", False)
    if getattr(args, "label_masks", None):
        cfg = run_config(args.run_dir)
        if len(args.inputs) != 1 or not Path(args.inputs[0]).is_dir():
            raise _config_error("--label-masks exports a data set's masks: give its "
                                         "image folder as the one INPUT")
        entries = masks_from_folder(args.inputs[0], args.label_masks,
                                    MaskDecoder.from_config(cfg), stems, progress)
        export_labels(entries, out, cfg.data.classes, cfg.data.class_colors, args.format)
    else:
        export_predictions(args.run_dir, args.inputs, out, args.format, stems,
                           getattr(args, "device", None), progress,
                           tta=getattr(args, "tta", False),
                           threshold=getattr(args, "threshold", None))
    print(f"wrote {out} ({args.format}): upload it to the annotation tool as pre-labels")
    return 0
