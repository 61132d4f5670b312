"""Options shared by several verbs, declared once. Parsing imports no torch: `unetkit --help`
answers at once."""

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
    g.add_argument("--style", choices=("outline", "tint"), default="outline",
                   help="how the overlay video marks the prediction (default outline)")
    g.add_argument("--max-frames", type=int, help="stop after this many frames (streams)")


def config_args(p: argparse.ArgumentParser, required: bool) -> None:
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--recipe", help="a recipe shipped with unetkit (see `unetkit recipes`)")
    group.add_argument("--config", help="a YAML config file")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                   metavar="KEY=VALUE",
                   help="change one config field, e.g. --set train.epochs=5 (repeatable)")


def frame_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--negatives", nargs="+", default=[], metavar="DIR",
                   help="folders of frames without foreground, scored frame by frame")
    p.add_argument("--threshold", type=float, help="override the run's operating point threshold")
    p.add_argument("--min-area", type=float, help="override the run's operating point min_area")
