"""The `unetkit` command: one thin wrapper per verb over the library functions."""

from __future__ import annotations

import argparse
import sys

from unetkit.cli.curation import add_audit_arguments, add_export_arguments, add_import_arguments
from unetkit.cli.options import (
    add_smoothing_args,
    add_video_args,
    config_args,
    data_arg,
    data_sets,
    device_arg,
    frame_args,
    negatives_arg,
    run_dir_arg,
    split_arg,
)
from unetkit.cli.score import add_arguments as add_score_arguments
from unetkit.core.choices import BACKENDS, EXPORT_FORMATS, SUBMISSION_FORMATS
from unetkit.core.version import __version__

# Each verb's code is imported when that verb runs (see `verb`): `unetkit --help` and the
# parsing of any command import no torch.


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetkit", description="Train, evaluate and deploy U-Net segmentation models.")
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model into a run folder")
    config_args(p, required=False)
    p.add_argument("--data", metavar="DIR", help="the data folder (overrides data.root)")
    p.add_argument("--out", help="the run folder (default: runs/<recipe name>)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint")
    p.add_argument("--folds", type=int, metavar="K",
                   help="k-fold cross-validation: one run per fold in --out, out-of-fold scores "
                        "in folds.json, the folds as one model (ensemble.json)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (sets train.device; default: cuda "
                                    "when available)")
    p.set_defaults(func=verb("cmd_train"))

    p = sub.add_parser("evaluate", help="score a trained model on a data folder")
    run_dir_arg(p)
    data_arg(p, "the data folder", required=True)
    split_arg(p, "val, the held-out split, on the run's own training data; all on any other "
                 "folder")
    p.add_argument("--tta", action="store_true",
                   help="average predictions over flips (and 90-degree rotations if declared)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.add_argument("--sequences", metavar="CSV",
                   help="frame,sequence table (frames in playing order): per-sequence "
                        "detection, raw and with the alarm rule below")

    add_smoothing_args(p.add_argument_group("--sequences: the alarm rule"), min_area=False)
    frame_args(p)
    device_arg(p)
    # no default split: evaluate takes val on the run's own data, all elsewhere
    p.set_defaults(func=verb("cmd_evaluate"), split_default=None)

    p = sub.add_parser("calibrate", help="choose and record the threshold and minimum area that "
                                         "keep false alarms under a target")
    run_dir_arg(p)
    data_arg(p, "the validation data folder (frames with foreground)")
    split_arg(p, "val")
    negatives_arg(p, "folders of frames without foreground (besides the run's own)")
    p.add_argument("--max-false-alarm", type=float, required=True,
                   help="the largest share of negative frames that may be flagged, e.g. 0.05")
    p.add_argument("--tta", action="store_true", help="calibrate the TTA predictions")
    device_arg(p)
    p.set_defaults(func=verb("cmd_calibrate"), split_default="val")

    p = sub.add_parser("report", help="score a run on several data sets: report.md, report.html")
    run_dir_arg(p)
    data_arg(p, "a data set to score (repeatable)", repeat=True)
    split_arg(p, "all")
    negatives_arg(p, "folders of frames without foreground, each scored as its own set")
    p.add_argument("--out", required=True, help="the report's folder")
    p.add_argument("--tta", action="store_true", help="average predictions over flips")
    p.add_argument("--threshold", type=float, help="override the run's operating point threshold")
    p.add_argument("--min-area", type=float, help="override the run's operating point min_area")
    p.add_argument("--compare", nargs="+", default=[], metavar="RUN_DIR",
                   help="more runs (or ensembles): a row each in the papers' table")
    p.add_argument("--published", action="store_true",
                   help="add published rows (U-Net, PraNet, HarDNet-MSEG, Polyp-PVT) to the "
                        "papers' table, marked as such, with their source")
    device_arg(p)
    p.set_defaults(func=verb("cmd_report"), split_default="all")

    p = sub.add_parser("predict", help="write masks for images, or overlays and alarms for videos")
    run_dir_arg(p)
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
    p.add_argument("--colormap", metavar="NAME",
                   help="with --probs: also STEM_prob_color.png, the foreground probability in "
                        "a matplotlib colour map (viridis, magma, jet, ...)")
    p.add_argument("--tile", action="store_true",
                   help="sliding-window inference at the training size instead of resizing")
    p.add_argument("--tile-overlap", type=float, default=0.5, help="tile overlap (default 0.5)")
    p.add_argument("--backend", choices=BACKENDS,
                   help="onnx: RUN_DIR/model.onnx with ONNX Runtime; int8: model.int8.onnx "
                        "(default: torch for images; for videos the fastest the run has)")

    add_video_args(p)
    add_export_arguments(p)  # --format coco|cvat: pre-labels for an annotation tool
    device_arg(p)
    p.set_defaults(func=verb("cmd_predict"))

    p = sub.add_parser("score", help="the polyp literature's metrics for a folder of prediction "
                                     "maps made by any model")
    add_score_arguments(p)
    p.set_defaults(func=verb("run", "unetkit.cli.score"))

    p = sub.add_parser("audit", help="rank a data set's masks by how much a model disagrees "
                                     "with them: audit.csv, audit.html, near-duplicate frames")
    add_audit_arguments(p)
    p.set_defaults(func=verb("run_audit", "unetkit.cli.curation"))

    p = sub.add_parser("import-labels", help="turn an annotation tool's export (COCO, CVAT) "
                                             "into a new mask folder")
    add_import_arguments(p)
    p.set_defaults(func=verb("run_import", "unetkit.cli.curation"))

    p = sub.add_parser("submit", help="write a competition submission CSV")
    run_dir_arg(p)
    p.add_argument("--data", required=True, metavar="DIR", help="the competition's data folder")
    p.add_argument("--format", required=True, choices=SUBMISSION_FORMATS,
                   help=f"the competition: {' or '.join(SUBMISSION_FORMATS)}")
    p.add_argument("--out", required=True, help="the CSV file to write")
    p.add_argument("--tta", action="store_true", help="average predictions over flips")
    device_arg(p)
    p.set_defaults(func=verb("cmd_submit"))

    p = sub.add_parser("export", help="export a model as ONNX or a Hugging Face Hub folder")
    run_dir_arg(p)
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                   help="int8: quantise RUN_DIR/model.onnx, kept if its mDice@point holds on "
                        "--data")
    p.add_argument("--out", help="the Hub folder; for onnx and int8 the .onnx file (default: "
                                 "RUN_DIR/model.onnx or model.int8.onnx, where `predict "
                                 "--backend onnx|int8` and `serve` look for it)")
    data_arg(p, "int8: the data folder to calibrate on and check with")
    split_arg(p, "val")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="int8: largest mDice@point drop accepted (default 0.01)")
    p.add_argument("--force", action="store_true",
                   help="replace files already there that --out did not name (the .json beside "
                        "the .onnx, a Hub folder's README.md, config.json, ...); never a run "
                        "folder's own files")
    p.set_defaults(func=verb("cmd_export"), split_default="val")

    p = sub.add_parser("check-data", help="list every problem in a data folder")
    p.add_argument("dir", nargs="?", metavar="DIR", help="the data folder (or give --data DIR)")
    p.add_argument("--data", metavar="DIR", help="the data folder, as the other verbs take it")
    p.add_argument("--out", metavar="PNG", help="the contact sheet, image | decoded mask "
                   "(default: check-data-<folder>.png in the current folder)")
    config_args(p, required=False)
    p.set_defaults(func=verb("cmd_check_data"))

    p = sub.add_parser("recipes", help="list the shipped recipes")
    p.set_defaults(func=verb("cmd_recipes"))

    p = sub.add_parser("demo", help="train, evaluate and predict on a synthetic data set")
    p.add_argument("--out", default="runs/demo", help="the demo's folder (default: runs/demo)")
    device_arg(p)
    p.set_defaults(func=verb("cmd_demo"))

    p = sub.add_parser("serve", help="a web page for trying a model (needs unetkit[serve])")
    run_dir_arg(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default: 7860, or the next free one)")
    device_arg(p)
    p.set_defaults(func=verb("cmd_serve"))

    for p in sub.choices.values():
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.verbs = sub.choices  # each verb's own parser, for its own usage in errors
    return parser


def verb(name: str, module: str = "unetkit.cli.verbs"):
    """The function that runs a verb, imported when the verb runs."""
    def run(args):
        import importlib

        return getattr(importlib.import_module(module), name)(args)
    return run


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command, in one form: `args.data`/`args.split` as the verb uses them. An
    unknown or inconsistent argument exits with the verb's own usage, not the top-level one."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    verb_parser = parser.verbs[args.command]
    if unknown:
        verb_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        normalize(args)
    except argparse.ArgumentTypeError as exc:
        verb_parser.error(str(exc))
    return args


def normalize(args: argparse.Namespace) -> None:
    """`--data DIR:SPLIT` or `--data DIR --split SPLIT`; `check-data DIR` or `--data DIR`."""
    if args.command == "check-data":
        if args.dir and args.data and args.dir != args.data:
            raise argparse.ArgumentTypeError(f"two data folders: {args.dir} and --data "
                                             f"{args.data}; give one")
        args.dir = args.dir or args.data
        if not args.dir:
            raise argparse.ArgumentTypeError("give the data folder: check-data DIR")
        return
    if not hasattr(args, "split_default"):
        return
    repeat = isinstance(args.data, list)
    sets = data_sets(args.data if repeat else [args.data] if args.data else [], args.split,
                     args.split_default)
    if repeat:
        args.data = sets
    elif sets:
        args.data, args.split = sets[0]
    else:
        args.split = args.split or args.split_default


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    args.argv = argv  # for the command line a fix leads to (cli.hints)
    from unetkit import config as config_mod
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
        fix = getattr(exc, "fix", None)
        if fix:  # the whole command to run next, on the same line: an error is one line
            from unetkit.cli.hints import command_with

            exc = f"{exc}; run: {command_with(argv, fix)}"
        print(f"unetkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, an unwritable folder: the message names the path
        print(f"unetkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        from unetkit.core.reading import last_read

        where = f" (the last file read: {last_read()})" if last_read() else ""
        print(f"unetkit {args.command}: error: out of memory{where}; use smaller images, "
              "batches or model, or free memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
