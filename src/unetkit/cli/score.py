"""`unetkit score MAPS --masks MASKS [--out DIR] [--existing-only] [--json FILE] [--suffix S]
[--workers N] [--mask-encoding E] [--mask-threshold T] [--class-colors R,G,B ...] [--classes K]`:
the polyp literature's metrics for a folder of prediction maps (see evaluation/score.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def colour(text: str) -> list[int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give a colour as R,G,B (0..255 each)")
    return [int(p) for p in parts]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("maps", type=Path, help="folder of prediction maps (grey PNG, 8 or 16 "
                        "bit, probability or binary), named by the masks' stems")
    parser.add_argument("--masks", type=Path, required=True,
                        help="folder of truth masks (any image format; by default binary, "
                        "foreground > 128: see --mask-encoding)")
    parser.add_argument("--out", type=Path, default=None, help="folder for scores.json, "
                        "scores.csv (per image), table.md and table.csv")
    parser.add_argument("--existing-only", action="store_true", help="score only the maps "
                        "that have a mask (and masks that have a map); the rest are listed")
    parser.add_argument("--suffix", default=None, help="only maps named STEM+SUFFIX count, "
                        "e.g. _prob (default: _prob in a folder `unetkit predict --probs` "
                        "wrote, its STEM_prob.png maps; otherwise every image)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes scoring images (default: CPU count, at most 4)")
    parser.add_argument("--json", type=Path, default=None, help="write the result (data-set "
                        "and per-image scores) to this JSON file")
    g = parser.add_argument_group("how the masks are encoded (read as check-data reads them)")
    g.add_argument("--mask-encoding", choices=("binary", "color", "index"), default="binary",
                   help="binary: grey, foreground >= --mask-threshold; color: the nearest of "
                   "--class-colors; index: values are class indices (default binary)")
    g.add_argument("--mask-threshold", type=int, default=None,
                   help="binary masks: the lowest foreground grey level (default 129: > 128, "
                   "the field's rule)")
    g.add_argument("--class-colors", type=colour, nargs="+", metavar="R,G,B",
                   help="color masks: each class's colour, the background first, e.g. "
                   "0,0,0 255,0,0")
    g.add_argument("--classes", type=int, default=2,
                   help="index masks: the number of classes, background included (default 2)")


def run(args: argparse.Namespace) -> int:
    from unetkit.core.files import check_outputs, output_set, write_text
    from unetkit.evaluation.score import ScoreError, mask_decoder, score_folders, table_markdown

    if args.json is not None and args.json.exists():
        print(f"unetkit score: {args.json} exists; unetkit does not write over it: choose "
              "another --json file or delete it", file=sys.stderr)
        return 2
    if args.json is not None:
        check_outputs([(args.json, "the scores")], input_dirs=[args.maps, args.masks],
                      option="--json")
    try:
        decoder = mask_decoder(args.mask_encoding, args.mask_threshold, args.class_colors,
                               args.classes)  # mask_threshold None: the field's rule
        with output_set():  # --out's files and --json together, or none of them
            result = score_folders(args.maps, args.masks, out=args.out, suffix=args.suffix,
                                   pairs="existing" if args.existing_only else "all",
                                   workers=args.workers, decoder=decoder)
            if args.json is not None:
                write_text(args.json, json.dumps(result, indent=1) + "\n")
    except ScoreError as exc:
        print(f"unetkit score: {exc}", file=sys.stderr)
        return 2
    if args.suffix is None and result["suffix"]:
        print(f"scored the probability maps STEM{result['suffix']}.png that `unetkit predict "
              "--probs` wrote, not the 0/255 masks beside them")
    print(table_markdown(result), end="")
    skipped = result["maps_without_mask"] + result["masks_without_map"]
    if skipped:
        print(f"not scored ({len(skipped)} without a partner): {', '.join(skipped[:10])}"
              + (" ..." if len(skipped) > 10 else ""))
    if result["empty_truth"]:
        print(f"{result['empty_truth']} of {result['images']} masks are empty (no foreground): "
              "their Dice and IoU count 0 at every threshold")
    if result["resized"]:
        print(f"{result['resized']} map(s) resized: {result['resize_rule']}")
    return 0
