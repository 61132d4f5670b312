"""The `unetkit` command: one thin wrapper per verb over the library functions."""

from __future__ import annotations

import argparse
import sys

from unetkit import config as config_mod
from unetkit.cli.curation import (
    add_audit_arguments,
    add_export_arguments,
    add_import_arguments,
    run_audit,
    run_import,
)
from unetkit.cli.options import add_smoothing_args, add_video_args, config_args, frame_args
from unetkit.cli.score import add_arguments as add_score_arguments
from unetkit.cli.score import run as run_score
from unetkit.cli.verbs import (
    cmd_calibrate,
    cmd_check_data,
    cmd_demo,
    cmd_evaluate,
    cmd_export,
    cmd_predict,
    cmd_recipes,
    cmd_report,
    cmd_serve,
    cmd_submit,
    cmd_train,
)
from unetkit.core.version import __version__


def build_parser() -> argparse.ArgumentParser:
    # The allowed names come from the registries of the modules that use them.
    from unetkit.deploy.export import FORMATS as EXPORT_FORMATS
    from unetkit.deploy.submit import FORMATS as SUBMIT_FORMATS
    from unetkit.inference.predictor import BACKENDS

    parser = argparse.ArgumentParser(
        prog="unetkit", description="Train, evaluate and deploy U-Net segmentation models.")
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model into a run folder")
    config_args(p, required=False)
    p.add_argument("--data", help="the data folder (overrides data.root)")
    p.add_argument("--out", help="the run folder (default: runs/<recipe name>)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint")
    p.add_argument("--folds", type=int, metavar="K",
                   help="k-fold cross-validation: one run per fold in --out, out-of-fold scores "
                        "in folds.json, the folds as one model (ensemble.json)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a trained model on a data folder")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="the data folder")
    p.add_argument("--split", default="val", help="train, val, test, all, or a file of stems")
    p.add_argument("--tta", action="store_true",
                   help="average predictions over flips (and 90-degree rotations if declared)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.add_argument("--sequences", metavar="CSV",
                   help="frame,sequence table (frames in playing order): per-sequence "
                        "detection, raw and with the alarm rule below")

    add_smoothing_args(p.add_argument_group("--sequences: the alarm rule"), min_area=False)
    frame_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("calibrate", help="choose and record the threshold and minimum area that "
                                         "keep false alarms under a target")
    p.add_argument("run_dir")
    p.add_argument("--data", help="the validation data folder (frames with foreground)")
    p.add_argument("--split", default="val", help="train, val, test, all, or a file of stems")
    p.add_argument("--negatives", nargs="+", default=[], metavar="DIR",
                   help="folders of frames without foreground (besides the run's own)")
    p.add_argument("--max-false-alarm", type=float, required=True,
                   help="the largest share of negative frames that may be flagged, e.g. 0.05")
    p.add_argument("--tta", action="store_true", help="calibrate the TTA predictions")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("report", help="score a run on several data sets: report.md, report.html")
    p.add_argument("run_dir")
    p.add_argument("--data", action="append", default=[], metavar="DIR[:SPLIT]",
                   help="a data set to score (repeatable); SPLIT defaults to all")
    p.add_argument("--negatives", action="append", default=[], metavar="DIR",
                   help="a folder of frames without foreground, scored as its own set")
    p.add_argument("--out", required=True, help="the report's folder")
    p.add_argument("--tta", action="store_true", help="average predictions over flips")
    p.add_argument("--threshold", type=float, help="override the run's operating point threshold")
    p.add_argument("--min-area", type=float, help="override the run's operating point min_area")
    p.add_argument("--compare", nargs="+", default=[], metavar="RUN_DIR",
                   help="more runs (or ensembles): a row each in the papers' table")
    p.add_argument("--published", action="store_true",
                   help="add published rows (U-Net, PraNet, HarDNet-MSEG, Polyp-PVT) to the "
                        "papers' table, marked as such, with their source")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("predict", help="write masks for images, or overlays and alarms for videos")
    p.add_argument("run_dir")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files or folders; video files, stream URLs, FORMAT:DEVICE")
    p.add_argument("--out", required=True, help="the folder for the masks")
    p.add_argument("--tta", action="store_true",
                   help="average predictions over flips (and 90-degree rotations if declared)")
    p.add_argument("--threshold", type=float,
                   help="foreground probability threshold (default: the run's operating point)")
    p.add_argument("--min-area", type=float,
                   help="a frame is detected, and keeps its mask, when its foreground covers "
                        "more than this fraction of it (default: the run's operating point; "
                        "else 0 for images and 0.005 for videos' alarms)")
    p.add_argument("--overlay", action="store_true", help="also write colour overlays")
    p.add_argument("--probs", action="store_true", help="also write probability maps")
    p.add_argument("--tile", action="store_true",
                   help="sliding-window inference at the training size instead of resizing")
    p.add_argument("--tile-overlap", type=float, default=0.5, help="tile overlap (default 0.5)")
    p.add_argument("--backend", choices=BACKENDS,
                   help="onnx: RUN_DIR/model.onnx with ONNX Runtime; int8: model.int8.onnx "
                        "(default: torch for images; for videos the fastest the run has)")

    add_video_args(p)
    add_export_arguments(p)  # --format coco|cvat: pre-labels for an annotation tool
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("score", help="the polyp literature's metrics for a folder of prediction "
                                     "maps made by any model")
    add_score_arguments(p)
    p.set_defaults(func=run_score)

    p = sub.add_parser("audit", help="rank a data set's masks by how much a model disagrees "
                                     "with them: audit.csv, audit.html, near-duplicate frames")
    add_audit_arguments(p)
    p.set_defaults(func=run_audit)

    p = sub.add_parser("import-labels", help="turn an annotation tool's export (COCO, CVAT) "
                                             "into a new mask folder")
    add_import_arguments(p)
    p.set_defaults(func=run_import)

    p = sub.add_parser("submit", help="write a competition submission CSV")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="the competition's data folder")
    p.add_argument("--format", required=True,
                   help=f"the competition: {' or '.join(sorted(SUBMIT_FORMATS))}")
    p.add_argument("--out", required=True, help="the CSV file to write")
    p.add_argument("--tta", action="store_true", help="average predictions over flips")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("export", help="export a model as ONNX or a Hugging Face Hub folder")
    p.add_argument("run_dir")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                   help="int8: quantise RUN_DIR/model.onnx, kept if its mDice holds on --data")
    p.add_argument("--out", required=True, help="the .onnx file, or the Hub folder")
    p.add_argument("--data", help="int8: the data folder to calibrate on and check with")
    p.add_argument("--split", default="val", help="int8: the split it is checked on")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="int8: largest mDice drop accepted (default 0.01)")
    p.add_argument("--force", action="store_true",
                   help="replace files already there that --out did not name (the .json beside "
                        "the .onnx, a Hub folder's README.md, config.json, ...); never a run "
                        "folder's own files")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("check-data", help="list every problem in a data folder")
    p.add_argument("dir")
    config_args(p, required=False)
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("recipes", help="list the shipped recipes")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("demo", help="train, evaluate and predict on a synthetic data set")
    p.add_argument("--out", default="runs/demo", help="the demo's folder (default: runs/demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="a web page for trying a model (needs unetkit[serve])")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default: 7860, or the next free one)")
    p.set_defaults(func=cmd_serve)

    for p in sub.choices.values():
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from unetkit.core.extras import MissingExtra
    from unetkit.core.files import OutputError
    from unetkit.data.folders import DataError
    from unetkit.inference.detection import PointError
    from unetkit.io.budget import ImageError
    from unetkit.runs.folder import RunError

    try:
        return args.func(args)
    except (config_mod.ConfigError, DataError, ImageError, RunError, OutputError, PointError,
            MissingExtra, FileNotFoundError, FloatingPointError) as exc:
        print(f"unetkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, an unwritable folder: the message names the path
        print(f"unetkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"unetkit {args.command}: error: out of memory; use smaller images, batches or "
              "model", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
