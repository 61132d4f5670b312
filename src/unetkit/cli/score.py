"""`unetkit score MAPS --masks MASKS [--out DIR] [--existing-only] [--json FILE] [--suffix S]
[--workers N]`: the polyp literature's metrics for a folder of prediction maps (see
evaluation/score.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("maps", type=Path, help="folder of prediction maps (grey PNG, 8 or 16 "
                        "bit, probability or binary), named by the masks' stems")
    parser.add_argument("--masks", type=Path, required=True,
                        help="folder of truth masks (any image format; foreground is > 128)")
    parser.add_argument("--out", type=Path, default=None, help="folder for scores.json, "
                        "scores.csv (per image), table.md and table.csv")
    parser.add_argument("--existing-only", action="store_true", help="score only the maps "
                        "that have a mask (and masks that have a map); the rest are listed")
    parser.add_argument("--suffix", default="", help="only maps named STEM+SUFFIX count, e.g. "
                        "_prob for the STEM_prob.png maps of `unetkit predict --probs`")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes scoring images (default: CPU count, at most 4)")
    parser.add_argument("--json", type=Path, default=None, help="write the result (data-set "
                        "and per-image scores) to this JSON file")


def run(args: argparse.Namespace) -> int:
    from unetkit.core.files import check_outputs, output_set, write_text
    from unetkit.evaluation.score import ScoreError, score_folders, table_markdown

    if args.json is not None and args.json.exists():
        print(f"unetkit score: {args.json} exists; unetkit does not write over it: choose "
              "another --json file or delete it", file=sys.stderr)
        return 2
    if args.json is not None:
        check_outputs([(args.json, "the scores")], input_dirs=[args.maps, args.masks],
                      option="--json")
    try:
        with output_set():  # --out's files and --json together, or none of them
            result = score_folders(args.maps, args.masks, out=args.out, suffix=args.suffix,
                                   pairs="existing" if args.existing_only else "all",
                                   workers=args.workers)
            if args.json is not None:
                write_text(args.json, json.dumps(result, indent=1) + "\n")
    except ScoreError as exc:
        print(f"unetkit score: {exc}", file=sys.stderr)
        return 2
    print(table_markdown(result), end="")
    skipped = result["maps_without_mask"] + result["masks_without_map"]
    if skipped:
        print(f"not scored ({len(skipped)} without a partner): {', '.join(skipped[:10])}"
              + (" ..." if len(skipped) > 10 else ""))
    if result["resized"]:
        print(f"{result['resized']} map(s) resized: {result['resize_rule']}")
    return 0
