"""What `unetkit check-data` says besides the problems: the encoding the masks look like and
the setting that reads them, the splits the configuration would make, and the problems grouped
(one line per kind of problem, with a count and three examples, not one line per file).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetkit.data.folders import DataError, Item, pair_items, problem
from unetkit.io.images import SIXTEEN_BIT, colourful, open_image, to_array

SAMPLE = 24  # masks looked at to tell the encoding: a few, spread over the data set
MIN_VAL = 20  # fewer validation images than this: scores swing from one epoch to the next
COLOR_NAMES = {(0, 0, 0): "black", (255, 255, 255): "white", (255, 0, 0): "red",
               (0, 255, 0): "green", (0, 0, 255): "blue", (255, 255, 0): "yellow",
               (255, 0, 255): "magenta", (0, 255, 255): "cyan", (128, 128, 128): "grey"}


def spread(items: list[Item], n: int) -> list[Item]:
    """`n` items spread evenly over the list (all of them when there are fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Mask encodings.


def _kind(path: Path) -> tuple[str, Counter]:
    """("colour", {rgb: pixels}) | ("index", {value: pixels}) | ("grey", {0 or 255: pixels})
    | ("levels", {}) for one mask file."""
    img = open_image(path)
    if img.mode in (*SIXTEEN_BIT, "L"):  # the file's own values (a 16-bit 0/1 mask stays 0/1)
        arr, rgb = np.asarray(img).astype(np.int64), None
    else:  # as the decoders see it: palette and 1-bit masks rendered as colours
        rgb = to_array(img, 3).astype(np.int16)
        arr = rgb[..., 0].astype(np.int64)
    if rgb is not None and colourful(rgb):
        # JPEG noise blurs every colour: round each channel to 0, 64, 128, 192 or 255 and keep
        # the colours with a share of the pixels worth naming.
        steps = np.rint(rgb / 64.0).astype(np.int64)  # 0..4 per channel
        counts = np.bincount((steps[..., 0] * 25 + steps[..., 1] * 5 + steps[..., 2]).ravel(),
                             minlength=125)
        level = lambda i: min(255, 64 * i)  # noqa: E731
        found = Counter({(level(k // 25), level(k // 5 % 5), level(k % 5)): int(c)
                         for k, c in enumerate(counts) if c > 0.002 * counts.sum()})
        return "colour", found
    values, counts = np.unique(arr, return_counts=True)
    if values.max() < 32:  # 0, 1, 2, ...: class indices
        return "index", Counter(dict(zip(values.tolist(), counts.tolist(), strict=True)))
    mid = counts[(values > 32) & (values < 224)].sum() / counts.sum()
    if mid > 0.05:
        return "levels", Counter()
    return "grey", Counter({0: int(counts[values <= 32].sum()),
                            255: int(counts[values >= 224].sum())})


def _color_name(rgb: tuple[int, ...]) -> str:
    return COLOR_NAMES.get(tuple(rgb), "rgb({},{},{})".format(*rgb))


def mask_encoding(items: list[Item], cfg) -> tuple[str, tuple[str, ...]]:
    """(one line saying what the masks look like and what reads them, the `--set` changes that
    read them, empty when the configuration already does)."""
    masks = [it.mask for it in spread([it for it in items if it.mask is not None], SAMPLE)]
    kinds: Counter = Counter()
    pixels: dict[str, Counter] = {}
    files: Counter = Counter()
    for path in masks:
        try:
            kind, found = _kind(path)
        except Exception:  # noqa: BLE001 - an unreadable mask is one of the problems listed
            continue
        kinds[kind] += 1
        pixels.setdefault(kind, Counter()).update(found)
        files.update(f"{kind}:{k}" for k in found)
    if not kinds:
        return "masks: none readable to tell their encoding", ()
    kind, n = kinds.most_common(1)[0]
    seen = f"{n} of {sum(kinds.values())} masks looked at"
    d = cfg.data
    if kind == "grey":
        reads = d.mask_encoding == "binary"
        return (f"masks: grey 0/255 ({seen}): data.mask_encoding=binary reads them"
                + ("" if reads else f", not the configured {d.mask_encoding}"),
                () if reads else ("data.mask_encoding=binary",))
    if kind == "levels":
        return (f"masks: many grey levels ({seen}): not a mask of classes; check that the "
                "masks folder holds masks", ())
    total = sum(pixels[kind].values())
    if kind == "index":
        values = sorted(pixels[kind])
        k = values[-1]
        shares = ", ".join(f"{v} ({pixels[kind][v] / total:.1%})" for v in values)
        classes = ["background"] + [f"class{v}" for v in range(1, k + 1)]
        reads = (d.mask_encoding == "index" and len(d.classes) == k + 1) or (
            k == 1 and d.mask_encoding == "binary" and d.mask_threshold <= 1)
        fix = () if reads else ("data.mask_encoding=index",
                                f"data.classes=[{','.join(classes)}]")
        if k == 1 and not reads:
            fix = ("data.mask_encoding=index",)  # two classes: the default classes fit
        return (f"masks: class indices 0..{k} (values {shares}; {seen})"
                + (": the configuration reads them" if reads else
                   f": read them with --set {' '.join(fix)} (name the classes)"), fix)
    # JPEG edges between two colours make a third in a few masks: kept only with 0.05 % of all
    colours = sorted((c for c in pixels[kind] if pixels[kind][c] >= 0.0005 * total),
                     key=lambda c: (sum(c) > 0, -pixels[kind][c]))
    shares = ", ".join(f"{_color_name(c)} {pixels[kind][c] / total:.1%} of pixels in "
                       f"{files[f'colour:{c}']} masks" for c in colours)
    as_lists = [list(c) for c in colours]
    declared = sorted(map(tuple, d.class_colors or []))
    reads = d.mask_encoding == "color" and declared == sorted(colours)
    if reads:
        return f"masks: colours {shares} ({seen}): the configuration reads them", ()
    names = ["background" if sum(c) == 0 else COLOR_NAMES.get(c, "c{}_{}_{}".format(*c))
             for c in colours]
    fix = ("data.mask_encoding=color", f"data.classes=[{','.join(names)}]",
           "data.class_colors=" + str(as_lists).replace(" ", ""))
    recipes = recipes_reading(colours)
    via = f"--recipe {' or --recipe '.join(recipes)}, or " if recipes else ""
    return (f"masks: colours {shares} ({seen}); read them with {via}--set {' '.join(fix)}", fix)


def recipes_reading(colours: list[tuple[int, ...]]) -> list[str]:
    """The shipped recipes whose colour classes are exactly these colours."""
    from unetkit import config as config_mod

    found = []
    for name in config_mod.recipe_names():
        data = config_mod.read_yaml(config_mod.recipe_path(name)).get("data", {})
        declared = sorted(tuple(c) for c in data.get("class_colors") or [])
        if data.get("mask_encoding") == "color" and declared == sorted(colours):
            found.append(name)
    return found


# ---------------------------------------------------------------------------------------------
# Splits.


def split_report(items: list[Item], root: Path, cfg) -> tuple[str, list[str]]:
    """(the split the configuration makes, in one line; problems and warnings about it: split
    files that are not there, a validation set too small to trust)."""
    from unetkit.data.splits import split_items

    s = cfg.data.split
    try:
        parts = split_items(items, root, s)
    except DataError as exc:
        return "split: not made", [problem(str(exc), exc.fix)]
    how = (f"files {s.train}" + (f" + {s.val}" if s.val else "") if s.train
           else f"random, val_fraction {s.val_fraction}, seed {s.seed}")
    line = (f"split: {len(parts['train'])} train, {len(parts['val'])} val, "
            f"{len(parts['test'])} test ({how})")
    n_val = len(parts["val"])
    if n_val >= MIN_VAL or not items:
        return line, []
    if s.train:
        return line, [f"warning: validation holds {n_val} images (fewer than {MIN_VAL}): its "
                      "scores swing from one epoch to the next; give a larger validation file"]
    fraction = min(0.3, math.ceil(MIN_VAL / len(items) * 100) / 100)
    fix = (f"data.split.val_fraction={fraction}",)
    gives = max(1, round(len(items) * fraction))
    more = "" if gives >= MIN_VAL else "; with so few images, cross-validate: train --folds 5"
    return line, [problem(f"warning: validation holds {n_val} images (fewer than {MIN_VAL}): "
                          f"its scores swing from one epoch to the next; --set {fix[0]} gives "
                          f"{gives}{more}", fix)]


# ---------------------------------------------------------------------------------------------
# The whole report.


@dataclass
class Survey:
    layout: str  # where the images and masks are, in one line
    pairs: int
    notes: list[str]  # the masks' encoding, the split
    problems: list[str]  # each a reason the data cannot be trained on as configured
    warnings: list[str]  # each a reason to doubt the scores
    items: list[Item]
    advice: tuple[str, ...] = field(default=())  # the `--set` that reads the masks as they are

    @property
    def fix(self) -> tuple[str, ...]:
        """The `--set` changes that read the masks and fix the problems, each key once (the first
        advice wins); a warning's change is the user's choice, named on its own line only."""
        fixes: dict[str, str] = {}
        for f in [*self.advice, *(f for p in self.problems for f in getattr(p, "fix", ()))]:
            fixes.setdefault(f.split("=", 1)[0], f)
        return tuple(fixes.values())


def survey(root: Path, cfg, progress: bool = True) -> Survey:
    """Everything `check-data` says of a data set under a configuration: the layout found, the
    pairs, every problem, the encoding the masks look like, the split and its size."""
    from unetkit.data.layouts import find_layout
    from unetkit.data.pairs import check_items
    from unetkit.io.images import MaskDecoder

    try:
        layout = find_layout(root, cfg.data).how
        items, problems = pair_items(root, cfg.data)
    except DataError as exc:
        return Survey("not found", 0, [], [problem(str(exc), exc.fix)], [], [])
    problems = list(problems)
    problems += check_items(items, MaskDecoder.from_config(cfg), cfg.model.in_channels, progress)
    encoding, advice = mask_encoding(items, cfg)
    split, found = split_report(items, root, cfg) if items else ("split: no pairs to split", [])
    warnings = [p for p in found if p.startswith("warning: ")]
    problems += [p for p in found if not p.startswith("warning: ")]
    return Survey(layout, len(items), [encoding, split], problems, warnings, items, advice)
