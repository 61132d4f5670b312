"""The `unetkit` command: one thin wrapper per verb over the library functions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from . import config as config_mod


def _config_args(p: argparse.ArgumentParser, required: bool) -> None:
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--recipe", help="a recipe shipped with unetkit (see `unetkit recipes`)")
    group.add_argument("--config", help="a YAML config file")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                   metavar="KEY=VALUE",
                   help="change one config field, e.g. --set train.epochs=5 (repeatable)")


def cmd_train(args) -> int:
    from .train import fit

    if args.resume and args.folds is not None:
        raise config_mod.ConfigError("--folds continues by itself: run the same command again "
                                     "(finished folds are kept), without --resume")
    resume = None
    if args.resume:  # `--resume RUN_DIR`, or `--resume --out RUN_DIR`
        resume = Path(args.resume if isinstance(args.resume, str) else args.out or "")
        if not resume.name:
            raise config_mod.ConfigError("--resume needs the run folder: --resume RUN_DIR")
    cfg = config_mod.for_training(args.recipe, args.config, args.overrides, args.data, resume)
    if args.folds is not None:  # one run per fold, then out-of-fold scores (see folds.py)
        from .folds import train_folds
        from .train import default_run_dir
        train_folds(cfg, args.out or default_run_dir(cfg), args.folds, progress=not args.quiet)
        return 0
    fit(cfg, resume or args.out, resume=resume is not None, progress=not args.quiet)
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate
    from .files import check_outputs, write_text

    if args.json:  # refused before the work, not after it
        check_outputs([(Path(args.json), "the scores")], run_dirs=[Path(args.run_dir)])
    if args.sequences:
        from .sequences import evaluate_sequences
        from .temporal import Smoothing

        scores = evaluate_sequences(args.run_dir, args.data, args.sequences,
                                    Smoothing(args.alarm_k, args.alarm_n, args.ema),
                                    min_area=args.min_area, progress=not args.quiet)
        print_sequences(scores)
        if args.json:
            write_text(args.json, json.dumps(scores, indent=2))
            print(f"wrote {args.json}")
        return 0
    scores = evaluate(args.run_dir, args.data, args.split, args.tta, progress=not args.quiet,
                      negatives=args.negatives, threshold=args.threshold, min_area=args.min_area)
    print_scores(args.split, scores, args.tta)
    for name, s in scores.get("per_class", {}).items():
        print(f"  {name:>20}: dice {s['dice']:.4f}  iou {s['iou']:.4f}  mDice {s['mDice']:.4f}")
    if args.json:
        write_text(args.json, json.dumps(scores, indent=2))
        print(f"wrote {args.json}")
    return 0


def print_sequences(scores: dict) -> None:
    s = scores["settings"]
    print(f"alarm on {s['k']} of {s['n']} frames, EMA {s['ema']}, threshold {s['threshold']}, "
          f"min_area {s['min_area']} ({s['operating_point_source']})")
    print(f"{'sequence':>8} {'frames':>6} {'polyp':>6} | {'sens raw':>8} {'FA frames':>9} "
          f"{'FAs':>4} | {'sens smooth':>11} {'FA frames':>9} {'FAs':>4}")
    rows = list(scores["per_sequence"].items()) + [("total", scores["total"])]
    for name, r in rows:
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{name:>8} {r['frames']:>6} {r['polyp_frames']:>6} | "
              f"{fmt(r['raw']['sensitivity']):>8} {r['raw']['false_alarm_frames']:>9} "
              f"{r['raw']['false_alarms']:>4} | {fmt(r['smoothed']['sensitivity']):>11} "
              f"{r['smoothed']['false_alarm_frames']:>9} {r['smoothed']['false_alarms']:>4}")


def print_scores(split: str, scores: dict, tta: bool) -> None:
    from .report import format_frames

    keys = ("mDice", "mIoU", "dice", "iou", "precision", "recall", "accuracy")
    if scores["images"]:
        print(f"{split} ({scores['images']} images with foreground{', TTA' if tta else ''}): "
              + "  ".join(f"{k} {scores[k]:.4f}" for k in keys))
    print(f"frames: {format_frames(scores)}")


def cmd_calibrate(args) -> int:
    from .calibrate import calibrate

    r = calibrate(args.run_dir, args.data, args.max_false_alarm, args.split, args.negatives,
                  args.tta, progress=not args.quiet)
    print(f"{r['frames_positive']} frames with foreground, {r['frames_negative']} without")
    for name in ("before", "after"):
        s = r[name]
        print(f"{name:>6}: threshold {s['threshold']:.2f}  min_area {s['min_area']:.4f}  "
              f"sensitivity {s['sensitivity']:.3f}  false alarms {s['false_alarm_rate']:.3f}  "
              f"mDice {s['mDice']:.4f}")
    print(f"recorded in {Path(args.run_dir) / 'operating_point.json'}; predict, evaluate, serve, "
          "submit and export use it (override with --threshold / --min-area)")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    out = write_report(args.run_dir, args.data, args.negatives, args.out, tta=args.tta,
                       progress=not args.quiet, threshold=args.threshold,
                       min_area=args.min_area)
    print(f"wrote {out / 'report.md'}, {out / 'report.html'} and {out / 'per_image.csv'}")
    return 0


def cmd_predict(args) -> int:
    from .predict import predict_files
    from .video import is_video, predict_videos_cli

    videos = [name for name in args.inputs if is_video(name)]
    if videos:
        predict_videos_cli(args, videos)
    images = [name for name in args.inputs if not is_video(name)]
    if not images:
        return 0
    result = predict_files(args.run_dir, images, args.out, tta=args.tta,
                           threshold=args.threshold, min_area=args.min_area,
                           overlays=args.overlay, probs=args.probs,
                           progress=not args.quiet, tile=args.tile,
                           tile_overlap=args.tile_overlap, backend=args.backend or "torch")
    print(f"wrote {result['written']} masks to {result['out']}")
    if result["failed"]:
        print(f"{len(result['failed'])} files could not be read:", file=sys.stderr)
        for line in result["failed"]:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def cmd_submit(args) -> int:
    from .submit import submit

    result = submit(args.run_dir, args.data, args.format, args.out, tta=args.tta,
                    progress=not args.quiet)
    print(f"wrote {result['rows']} rows for {result['images']} images to {result['out']}")
    return 0


def cmd_export(args) -> int:
    from .export import export

    if args.format == "int8":
        from .quantize import export_int8

        if not args.data:
            raise config_mod.ConfigError("--format int8 needs --data DIR: the images it is "
                                         "calibrated on (train split) and checked on (--split)")
        c = export_int8(args.run_dir, args.out, args.data, args.split, args.tolerance,
                        progress=not args.quiet)["check"]
        print(f"wrote {args.out}: mDice int8 {c['int8_mDice']:.4f} vs float "
              f"{c['float_mDice']:.4f} on {c['images']} {c['split']} images (drop "
              f"{c['mDice_drop']:.4f} <= {c['tolerance']})")
        return 0
    result = export(args.run_dir, args.format, args.out)
    if args.format == "onnx":
        print(f"wrote {args.out} (opset {result['opset']}; ONNX Runtime vs PyTorch max logit "
              f"difference {result['check']['max_abs_logit_diff']:.2e})")
    else:
        print(f"wrote {', '.join(result['files'])} to {result['out']}")
    return 0


def cmd_check_data(args) -> int:
    from .data import check_data
    from .negatives import check_negatives

    cfg = config_mod.load(args.recipe, args.config, args.overrides, args.dir)
    pairs, problems = check_data(Path(args.dir), cfg, progress=not args.quiet)
    negatives = check_negatives(Path(args.dir), cfg, problems)
    if negatives:
        print(f"{args.dir}: {negatives}")
    if problems:
        print(f"{args.dir}: {pairs} image/mask pairs, {len(problems)} problems:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"{args.dir}: {pairs} image/mask pairs, no problems found")
    return 0


def cmd_recipes(args) -> int:
    for name in config_mod.recipe_names():
        values = config_mod.read_yaml(config_mod.recipe_path(name))
        print(f"{name:22s} {values.get('description', '')}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, progress=not args.quiet)
    return 0


def cmd_serve(args) -> int:
    from .serve import MissingExtra, serve

    try:
        serve(args.run_dir, host=args.host, port=args.port)
    except MissingExtra as exc:
        print(f"unetkit serve: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _frame_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--negatives", nargs="+", default=[], metavar="DIR",
                   help="folders of frames without foreground, scored frame by frame")
    p.add_argument("--threshold", type=float, help="override the run's operating point threshold")
    p.add_argument("--min-area", type=float, help="override the run's operating point min_area")


def build_parser() -> argparse.ArgumentParser:
    # The allowed names come from the registries of the modules that use them.
    from .export import FORMATS as EXPORT_FORMATS
    from .predict import BACKENDS
    from .submit import FORMATS as SUBMIT_FORMATS

    parser = argparse.ArgumentParser(
        prog="unetkit", description="Train, evaluate and deploy U-Net segmentation models.")
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model into a run folder")
    _config_args(p, required=False)
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
    from .temporal import add_smoothing_args

    add_smoothing_args(p.add_argument_group("--sequences: the alarm rule"), min_area=False)
    _frame_args(p)
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
    from .temporal import add_video_args

    add_video_args(p)
    p.set_defaults(func=cmd_predict)

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
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("check-data", help="list every problem in a data folder")
    p.add_argument("dir")
    _config_args(p, required=False)
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
    from .data import DataError
    from .files import OutputError
    from .images import ImageError
    from .runs import RunError

    try:
        return args.func(args)
    except (config_mod.ConfigError, DataError, ImageError, RunError, OutputError,
            FileNotFoundError, FloatingPointError) as exc:
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
