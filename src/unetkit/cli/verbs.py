"""One function per `unetkit` verb: read the parsed arguments, call the library, print.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from unetkit import config as config_mod
from unetkit.core.text import plural


def cmd_train(args) -> int:
    if args.resume and args.folds is not None:
        raise config_mod.ConfigError("--folds continues by itself: run the same command again "
                                     "(finished folds are kept), without --resume")
    resume = None
    if args.resume:  # `--resume RUN_DIR`, or `--resume --out RUN_DIR`
        resume = Path(args.resume if isinstance(args.resume, str) else args.out or "")
        if not resume.name:
            raise config_mod.ConfigError("--resume needs the run folder: --resume RUN_DIR")
    overrides = args.overrides + ([f"train.device={args.device}"] if args.device else [])
    cfg = config_mod.for_training(args.recipe, args.config, overrides, args.data, resume)
    if args.out and not resume:  # never a run inside the data it reads
        from unetkit.core.files import check_outputs

        check_outputs([], folders=[Path(args.out)],
                      input_dirs=[Path(cfg.data.root)] if cfg.data.root else [])
    if args.folds is not None:  # one run per fold, then out-of-fold scores (see folds.py)
        from unetkit.training.fit import default_run_dir
        from unetkit.training.folds import train_folds
        train_folds(cfg, args.out or default_run_dir(cfg), args.folds, progress=not args.quiet)
        return 0
    from unetkit.training.fit import fit  # the engine (torch, timm) after the config is read

    fit(cfg, resume or args.out, resume=resume is not None, progress=not args.quiet)
    return 0


def cmd_evaluate(args) -> int:
    from unetkit.core.files import check_outputs, write_text
    from unetkit.evaluation.evaluate import evaluate

    if args.json:  # refused before the work, not after it
        tables = [Path(f) for f in (args.sequences, args.split) if f and Path(f).is_file()]
        check_outputs([(Path(args.json), "the scores")], inputs=tables,
                      input_dirs=[Path(args.data)], run_dirs=[Path(args.run_dir)],
                      option="--json")
    if args.sequences:
        from unetkit.clinical.sequences import evaluate_sequences
        from unetkit.clinical.temporal import Smoothing

        scores = evaluate_sequences(args.run_dir, args.data, args.sequences,
                                    Smoothing(args.alarm_k, args.alarm_n, args.ema),
                                    threshold=args.threshold, min_area=args.min_area,
                                    progress=not args.quiet, device=args.device)
        print_sequences(scores)
        if args.json:
            write_text(args.json, json.dumps(scores, indent=2))
            print(f"wrote {args.json}")
        return 0
    scores = evaluate(args.run_dir, args.data, args.split, args.tta, progress=not args.quiet,
                      negatives=args.negatives, threshold=args.threshold, min_area=args.min_area,
                      device=args.device)
    print_scores(scores["split"], scores, args.tta)
    for name, s in scores.get("per_class", {}).items():
        print(f"  {name:>20}: dice {s['dice']:.4f}  iou {s['iou']:.4f}  "
              f"mDice@point {s['mDice_point']:.4f}")
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
    from unetkit.evaluation.paper_table import COLUMNS
    from unetkit.evaluation.report import format_frames

    keys = ("mDice_point", "mIoU_point", "dice", "iou", "precision", "recall", "accuracy")
    print(scored_line(scores))
    if scores["images"]:
        print(f"{split} ({scores['images']} images with foreground{', TTA' if tta else ''}), "
              "at the operating point: "
              + "  ".join(f"{k.replace('_point', '@point')} {scores[k]:.4f}" for k in keys))
    if scores.get("field"):
        print("the polyp literature's columns (256 thresholds, as PraNet's evaluation): "
              + "  ".join(f"{title} {scores['field'][k]:.3f}" for k, title in COLUMNS))
    print(f"frames: {format_frames(scores)}")


def scored_line(scores: dict) -> str:
    """What was scored, first: the split and how many frames of how many."""
    what = {"all": "every image", "val": "the held-out split"}.get(scores["split"], "")
    return (f"scored split '{scores['split']}'{f' ({what})' if what else ''}: "
            f"{scores['images_scored']} of {scores['images_total']} images")


def cmd_calibrate(args) -> int:
    from unetkit.clinical.calibrate import calibrate

    r = calibrate(args.run_dir, args.data, args.max_false_alarm, args.split, args.negatives,
                  args.tta, progress=not args.quiet, device=args.device)
    s = r["sample"]
    print(f"decided from {s['frames_positive']} frames with foreground and "
          f"{s['frames_negative']} without (floor: {s['floor_positive']} and "
          f"{s['floor_negative']}; see docs/metrics.md)")
    for name in ("before", "after"):
        s = r[name]
        print(f"{name:>6}: threshold {s['threshold']:.2f}  min_area {s['min_area']:.4f}  "
              f"sensitivity {s['sensitivity']:.3f}  false alarms {s['false_alarm_rate']:.3f}  "
              f"mDice@point {s['mDice_point']:.4f}")
    print(f"the sensitivity / false-alarm curve: {r['curve']}")
    print(f"recorded in {Path(args.run_dir) / 'operating_point.json'}; predict, evaluate, serve, "
          "submit and export use it (override with --threshold / --min-area)")
    if r.get("warning"):
        print(f"unetkit calibrate: warning: {r['warning']}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from unetkit.evaluation.report import write_report

    out = write_report(args.run_dir, args.data, args.negatives, args.out, tta=args.tta,
                       progress=not args.quiet, threshold=args.threshold,
                       min_area=args.min_area, compare=args.compare, published=args.published,
                       device=args.device)
    print((out / "papers_table.md").read_text(), end="")
    print(f"wrote {out / 'report.md'}, {out / 'report.html'}, {out / 'scores.json'} and "
          f"{out / 'per_image.csv'}")
    return 0


def cmd_predict(args) -> int:
    if args.format != "masks":  # pre-labels for an annotation tool (cli.curation)
        from unetkit.cli.curation import run_export

        return run_export(args)
    from unetkit.clinical.temporal import Smoothing
    from unetkit.clinical.video import is_video, predict_videos, video_name
    from unetkit.inference.predict import predict_files

    videos = [name for name in args.inputs if is_video(name)]
    if videos:
        smoothing = Smoothing(args.alarm_k, args.alarm_n, args.ema)
        for s in predict_videos(args.run_dir, videos, args.out, smoothing, args.threshold,
                                args.min_area, args.backend, masks=args.masks,
                                overlay_video=not args.no_video, style=args.style or "outline",
                                max_frames=args.max_frames, progress=not args.quiet,
                                device=args.device):
            print(f"{s['source']}: {s['frames']} frames at {s['fps_achieved']} frames/s, "
                  f"{s['alarm_count']} alarms ({s['alarm_total_s']} s) -> "
                  f"{Path(args.out) / video_name(s['source'])}")
    images = [name for name in args.inputs if not is_video(name)]
    if not images:
        return 0
    result = predict_files(args.run_dir, images, args.out, tta=args.tta,
                           threshold=args.threshold, min_area=args.min_area,
                           overlays=args.overlay, probs=args.probs,
                           progress=not args.quiet, tile=args.tile,
                           tile_overlap=args.tile_overlap, backend=args.backend or "torch",
                           device=args.device, style=args.style or "tint",
                           colormap=args.colormap)
    print(f"wrote {result['written']} masks to {result['out']}")
    if result["failed"]:
        print(f"{plural(len(result['failed']), 'file')} could not be read:", file=sys.stderr)
        for line in result["failed"]:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def cmd_submit(args) -> int:
    from unetkit.deploy.submit import submit

    result = submit(args.run_dir, args.data, args.format, args.out, tta=args.tta,
                    progress=not args.quiet, device=args.device)
    print(f"wrote {result['rows']} rows for {result['images']} images to {result['out']}")
    return 0


def cmd_export(args) -> int:
    from unetkit.deploy.export import export, onnx_out

    given = args.out is not None
    args.out = onnx_out(args.run_dir, args.format, args.out)
    elsewhere = "" if not given else (
        f"; `predict --backend {args.format}` reads {args.run_dir}/model"
        f"{'.int8' if args.format == 'int8' else ''}.onnx: leave --out out to write it there")
    if args.format == "int8":
        from unetkit.deploy.quantize import export_int8

        if not args.data:
            raise config_mod.ConfigError("--format int8 needs --data DIR: the images it is "
                                         "calibrated on (train split) and checked on (--split)")
        c = export_int8(args.run_dir, args.out, args.data, args.split, args.tolerance,
                        progress=not args.quiet, force=args.force)["check"]
        print(f"wrote {args.out}: mDice@point int8 {c['int8_mDice_point']:.4f} vs float "
              f"{c['float_mDice_point']:.4f} on {c['images']} {c['split']} images (drop "
              f"{c['mDice_point_drop']:.4f} <= {c['tolerance']}){elsewhere}")
        return 0
    result = export(args.run_dir, args.format, args.out, force=args.force)
    if args.format == "onnx":
        print(f"wrote {args.out} (opset {result['opset']}; ONNX Runtime vs PyTorch max logit "
              f"difference {result['check']['max_abs_logit_diff']:.2e}){elsewhere}")
    else:
        print(f"wrote {', '.join(result['files'])} to {result['out']}")
    return 0


def cmd_check_data(args) -> int:
    """Where the images and masks are, what the masks look like and what reads them, the split,
    every problem grouped by kind, a contact sheet, and the command that applies the advice."""
    from unetkit.cli.hints import command_with
    from unetkit.data.negatives import check_negatives
    from unetkit.data.pairs import group_problems
    from unetkit.data.survey import survey

    root = Path(args.dir)
    cfg = config_mod.load(args.recipe, args.config, args.overrides, args.dir)
    sheet = contact_sheet_path(args, root)  # refused before the data are read, not after
    report = survey(root, cfg, progress=not args.quiet)
    print(f"{args.dir}: {report.layout}")
    negatives = check_negatives(root, cfg, report.problems)
    for line in ([negatives] if negatives else []) + report.notes + report.warnings:
        print(line)
    if sheet and report.items:
        from unetkit.data.sheet import write_sheet

        shown = write_sheet(sheet, report.items, cfg, f"unetkit check-data {args.dir}")
        if shown:
            print(f"contact sheet: {sheet} (image | decoded mask | overlay, {shown} pairs)")
    n = len(report.problems)
    found = f"{plural(n, 'problem')}:" if n else "no problems found"
    print(f"{args.dir}: {plural(report.pairs, 'image/mask pair')}, {found}")
    for line in group_problems(report.problems):
        print(f"  - {line}")
    if report.fix:
        print(f"run: {command_with(args.argv, report.fix)}")
    return 1 if report.problems else 0


def contact_sheet_path(args, root: Path) -> Path | None:
    """check-data's contact sheet: --out, or check-data-<name>.png in the current folder; never
    inside the data (the default is then left out, a given --out refused)."""
    from unetkit.core.files import OutputError, check_outputs

    given = getattr(args, "out", None)
    path = Path(given) if given else Path(f"check-data-{root.stem or 'data'}.png")
    if path.is_dir():
        path = path / f"check-data-{root.stem or 'data'}.png"
    # A CSV list's folder is often the project's, with the pairs in sub-folders: only the list
    # itself is protected there (the sheet is a new file beside it).
    inputs = {"inputs": [root]} if root.is_file() else {"input_dirs": [root]}
    try:
        check_outputs([(path, "the contact sheet")], **inputs)
    except OutputError:
        if given:
            raise
        print(f"no contact sheet: the current folder is inside {root}; give --out FILE.png")
        return None
    return path


def cmd_recipes(args) -> int:
    for name in config_mod.recipe_names():
        values = config_mod.read_yaml(config_mod.recipe_path(name))
        print(f"{name:22s} {values.get('description', '')}")
    return 0


def cmd_demo(args) -> int:
    from unetkit.cli.demo import run_demo

    run_demo(args.out, progress=not args.quiet,
             overrides=[f"train.device={args.device}"] if args.device else [])
    return 0


def cmd_serve(args) -> int:
    from unetkit.deploy.serve import serve

    # a missing Gradio: see cli.main
    serve(args.run_dir, host=args.host, port=args.port, device=args.device)
    return 0
