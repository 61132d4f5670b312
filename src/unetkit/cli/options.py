"""Options shared by several verbs, declared once, with one form each: `--data DIR[:SPLIT]`,
`--split NAME|FILE`, `--negatives DIR...` (repeatable), `--device`. Parsing imports no torch:
`unetkit --help` answers at once."""

from __future__ import annotations

import argparse

from unetkit.clinical.temporal import DEFAULT_MIN_AREA, Smoothing


def add_smoothing_args(g, min_area: bool = True) -> None:
    """The alarm rule's options, for `predict` (videos) and `evaluate --sequences`;
    `min_area=False` where the parser has --min-area already."""
    g.add_argument("--alarm-k", type=int, default=Smoothing.k,
                   help=f"alarm when detected on K of the last N frames (default {Smoothing.k})")
    g.add_argument("--alarm-n", type=int, default=Smoothing.n,
                   help=f"(default {Smoothing.n}; --alarm-k 1 --alarm-n 1: no smoothing)")
    g.add_argument("--ema", type=float, default=Smoothing.ema,
                   help="moving average of probability maps, weight of the past (default 0: off)")
    if min_area:
        g.add_argument("--min-area", type=float, help="fraction of the frame the foreground must "
                       f"exceed for a detection (default: the run's operating point, else "
                       f"{DEFAULT_MIN_AREA})")


def add_video_args(p) -> None:
    """The options of `unetkit predict` for videos (here: the CLI imports no torch to parse)."""
    g = p.add_argument_group("videos and streams")
    add_smoothing_args(g, min_area=False)  # predict's --min-area serves images and videos
    g.add_argument("--masks", action="store_true", help="also write one mask PNG per frame")
    g.add_argument("--no-video", action="store_true", help="frames.csv and summary.json only")
    g.add_argument("--style", choices=("outline", "tint"),
                   help="how overlays mark the prediction (default: outline for videos, tint "
                        "for images' --overlay)")
    g.add_argument("--max-frames", type=int, help="stop after this many frames (streams)")


def config_args(p: argparse.ArgumentParser, required: bool) -> None:
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--recipe", help="a recipe shipped with unetkit (see `unetkit recipes`)")
    group.add_argument("--config", help="a YAML config file")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                   metavar="KEY=VALUE",
                   help="change one config field, e.g. --set train.epochs=5 (repeatable)")


def frame_args(p: argparse.ArgumentParser) -> None:
    negatives_arg(p, "folders of frames without foreground, scored frame by frame")
    p.add_argument("--threshold", type=float, help="override the run's operating point threshold")
    p.add_argument("--min-area", type=float, help="override the run's operating point min_area")


def run_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run folder (from `unetkit train`), an ensemble folder, or "
                        "hf://user/name")


def device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")


def negatives_arg(p: argparse.ArgumentParser, help: str) -> None:
    """`--negatives A B` and `--negatives A --negatives B` both give [A, B]."""
    p.add_argument("--negatives", action="extend", nargs="+", default=[], metavar="DIR",
                   help=help)


def data_arg(p: argparse.ArgumentParser, help: str, required: bool = False,
             repeat: bool = False) -> None:
    """`--data DIR` or `--data DIR:SPLIT` (see `data_sets`)."""
    p.add_argument("--data", required=required, metavar="DIR[:SPLIT]",
                   action="append" if repeat else "store", default=[] if repeat else None,
                   help=help + "; DIR:SPLIT picks a split, as --split does")


def split_arg(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--split", metavar="NAME|FILE",
                   help=f"train, val, test, all, or a file of stems (default {default}); "
                        "or write --data DIR:SPLIT")


def data_sets(data: list[str], split: str | None, default: str) -> list[tuple[str, str]]:
    """(DIR, SPLIT) of each --data: its own :SPLIT, else --split, else `default`. One --data
    with a :SPLIT and a different --split is an error (the caller shows the verb's usage)."""
    from unetkit.data.splits import parse_data_split

    sets = []
    for text in data:
        folder, own = parse_data_split(text)
        if own and split and own != split and len(data) == 1:
            raise argparse.ArgumentTypeError(f"--data {text} and --split {split} name two "
                                             "splits; give one")
        sets.append((str(folder), own or split or default))
    return sets
