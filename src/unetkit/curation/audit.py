"""Audit a data set's masks against a model: which labels to look at first.

`audit(data_dir, predictions, out_dir)` compares every mask with a model's probabilities
(`measures`: Dice, boundary distance, polyps in one and not the other, area ratio, the model's
confidence inside and outside the mask), ranks the images by a combined suspicion score and
writes to `out_dir`:

    audit.csv        one row per image, most suspicious first, with every measure and the reasons
    audit.html       the `top` most suspicious images: image | mask | prediction | difference,
                     and why each was flagged; then the near-duplicate frames across splits
    audit_files/     the page's PNG thumbnails
    duplicates.csv   near-duplicate pairs (perceptual hash, see `duplicates`), across splits first
    flagged.txt      the stems on the page, one per line: the images to correct first

The probabilities (see `sources`) come from a run or ensemble folder (or a `Predictor`), from
out-of-fold runs (`folds=K`: K fold models are trained so that no image is judged by a model
that trained on it), or from a folder of probability maps (`unetkit predict --probs`).
The measures are taken at a working size (the longer side at most `work_size` pixels).
"""

from __future__ import annotations

import copy
import csv
import io
import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from unetkit import config as config_mod
from unetkit.core.files import check_outputs, output_set, write_text
from unetkit.core.text import plural
from unetkit.curation.duplicates import (
    HASH_DISTANCE,
    near_duplicates,
    perceptual_hash,
    write_duplicates,
)
from unetkit.curation.measures import measure, predicted_labels
from unetkit.curation.page import FILES, image_thumbnail, write_page, write_thumbnails
from unetkit.curation.sources import (
    FolderSource,
    PredictorSource,
    out_of_fold_source,
    run_source,
    training_names,
)
from unetkit.data.folders import DataError, pair_items, read_stems, resolve_layout
from unetkit.data.splits import split_items
from unetkit.inference.detection import check_point
from unetkit.io.budget import ImageError
from unetkit.io.images import MaskDecoder, read_checked_mask, read_image, resize_mask
from unetkit.io.plots import class_palette

COLUMNS = ["rank", "image", "suspicion", "reasons", "dice", "boundary_mean", "boundary_p95",
           "mask_polyps", "predicted_polyps", "missed_polyps", "extra_polyps", "missed_area",
           "extra_area", "mask_area", "predicted_area", "area_ratio", "p_inside", "p_outside",
           "confident_missing", "confident_extra", "class_mismatch", "split", "judged_by",
           "near_duplicates", "width", "height"]
THUMB_SIDE = 200  # longer side of the page's thumbnails, in pixels
OUTPUT_FILES = ("audit.csv", "audit.html", "duplicates.csv", "flagged.txt")
HASH_BITS = 64  # bits of each perceptual hash (phash and dhash)


def fit_size(h: int, w: int, side: int) -> tuple[int, int]:
    """(h, w) scaled down so that the longer side is at most `side` (never up)."""
    scale = min(1.0, side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def resolve_source(predictions, data_dir: Path, out_dir: Path, cfg, folds: int | None,
                   folds_dir, device, progress: bool, log):
    """(source, config) for the ways predictions can be given (see the module's docstring)."""
    from unetkit.inference.predictor import Predictor

    if folds is not None:
        if predictions is not None:  # never ignored in silence
            raise config_mod.ConfigError(
                f"{predictions} and --folds {folds}: give one source of predictions, not both: "
                "the run or maps folder (and no --folds), or --folds K with --recipe/--config "
                "to train K fold models that judge the images out of fold")
        if cfg is None:
            raise config_mod.ConfigError("folds=K trains K models: give the training config "
                                         "(--recipe NAME or --config FILE)")
        return out_of_fold_source(cfg, data_dir, folds, folds_dir or out_dir / "folds", device,
                                  progress, log), cfg
    if isinstance(predictions, Predictor):
        return PredictorSource(predictions), cfg or predictions.cfg
    if predictions is None:
        raise config_mod.ConfigError("give the predictions: a run or ensemble folder, a folder "
                                     "of probability maps, or folds=K")
    path = Path(predictions)
    if (path / "config.json").exists() or (path / "ensemble.json").exists() \
            or str(predictions).startswith("hf://"):
        src = run_source(predictions, device)
        if not (path / "ensemble.json").exists():  # a run: did it train on these images?
            src.trained = training_names(src.cfg, data_dir)
        return src, cfg or src.cfg
    cfg = cfg or config_mod.from_dict({})  # binary masks unless a config says otherwise
    return FolderSource(path, cfg), cfg


def split_names(items, root: Path, cfg, splits) -> dict[str, str]:
    """{stem: split name}: from `splits` ({name: stems file or list of stems}) when given, else
    the split the configuration trains with ({} when it cannot be made). A name given None
    stands for that part (train, val, test) of the configuration's split."""
    if splits:
        out = {}
        for name, stems in splits.items():
            if stems is None:  # the configuration's own split of that name
                stems = [it.name for it in split_items(items, root, cfg.data.split)[name]]
            for stem in (read_stems(Path(stems)) if isinstance(stems, (str, Path)) else stems):
                out[stem] = name
        return out
    try:
        return {it.name: name for name, part in split_items(items, root, cfg.data.split).items()
                for it in part}
    except DataError:
        return {}


def audit(data_dir, predictions=None, out_dir="audit", *, cfg=None, folds: int | None = None,
          folds_dir=None, stems: list[str] | None = None, splits: dict | None = None,
          top: int = 40, threshold: float | None = None, work_size: int = 320,
          hash_distance: int = HASH_DISTANCE, batch_size: int = 8, device: str | None = None,
          progress: bool = True, log=print) -> dict:
    """Audit the masks of `data_dir` against `predictions` (see the module's docstring).

    `cfg`: the data's configuration (layout, classes, mask encoding); by default the run's, or
    binary masks for a folder of probability maps. `stems`: audit only these images. `splits`:
    {split name: stems file or list} for the duplicate search (default: the configuration's
    split). Returns {"rows": ranked rows, "duplicates": pairs, "out": out_dir}."""
    root, out_dir = Path(data_dir), Path(out_dir)
    check_point(threshold, None)  # the one range rule of every verb's --threshold
    check_ranges(top, hash_distance)
    planned = [(out_dir / n, "the audit") for n in OUTPUT_FILES]
    # before any fold is trained: the fold runs are outputs too
    fold_runs = [Path(folds_dir or out_dir / "folds")] if folds is not None else []
    check_outputs(planned, input_dirs=[root], folders=fold_runs, option="--out/--folds-dir")
    src, cfg = resolve_source(predictions, root, out_dir, cfg, folds, folds_dir, device,
                              progress, log)
    cfg = copy.deepcopy(cfg)
    cfg.data.root = str(root)
    if threshold is None:
        threshold = getattr(getattr(src, "predictor", None), "threshold", cfg.train.threshold)
    items, problems = pair_items(root, cfg.data)
    for p in problems:
        log(f"skipped: {p}")
    if stems is not None:
        wanted = set(stems)
        items = [it for it in items if it.name in wanted]
    if not items:
        raise DataError(f"{root}: no image/mask pairs to audit")
    image_dir, mask_dir, _ = resolve_layout(root, cfg.data)
    check_outputs(planned, input_dirs=[image_dir, mask_dir])
    split_of = split_names(items, root, cfg, splits)
    decoder = MaskDecoder.from_config(cfg)
    rows, small, hashes, names, skipped = [], {}, [], [], []
    bar = tqdm(total=len(items), desc="auditing", unit="image", disable=not progress)
    for start in range(0, len(items), batch_size):
        batch, images, masks = [], [], []
        for it in items[start:start + batch_size]:
            try:
                image = read_image(it.image, cfg.model.in_channels)
                mask = read_checked_mask(it.mask, decoder)  # as check-data reads it
            except ImageError as exc:
                log(f"skipped: {exc}")
                skipped.append(str(exc))
                continue
            if mask.shape != image.shape[:2]:
                log(f"skipped: {it.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"is {image.shape[1]}x{image.shape[0]}; re-export the mask at the image's "
                    "size")
                continue
            batch.append(it)
            images.append(image)
            masks.append(mask)
        sizes = [fit_size(*img.shape[:2], work_size) for img in images]
        probs = src.probabilities(batch, images, sizes) if batch else []
        for it, image, mask, size, p in zip(batch, images, masks, sizes, probs, strict=True):
            m = measure(resize_mask(mask, size), p, threshold)
            h, w = image.shape[:2]
            rows.append({"image": it.name, **m, "split": split_of.get(it.name, ""),
                         "judged_by": src.judged_by(it), "width": w, "height": h})
            thumb = fit_size(h, w, THUMB_SIDE)
            small[it.name] = (it, resize_mask(mask, thumb),
                              resize_mask(predicted_labels(p, threshold), thumb))
            hashes.append(perceptual_hash(image))
            names.append(it.name)
        bar.update(len(items[start:start + batch_size]))
    bar.close()
    if not rows and skipped:  # nothing audited: an empty page would read as "all is well"
        raise DataError(f"no mask could be audited: {skipped[0]}")
    seen = sum(r["judged_by"].endswith("(trained on it)") for r in rows)
    if seen:
        log(f"{seen} of {plural(len(rows), 'image')} were in the run's training split: a model "
            "repeats the labels it trained on, wrong ones included; audit out of fold (folds=K) "
            "to judge them")
    pairs = near_duplicates(names, np.array(hashes), split_of, hash_distance)
    dups: dict[str, list[str]] = {}
    for d in pairs:
        dups.setdefault(d["image_a"], []).append(d["image_b"])
        dups.setdefault(d["image_b"], []).append(d["image_a"])
    rows.sort(key=lambda r: (-r["suspicion"], r["image"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
        row["near_duplicates"] = " ".join(dups.get(row["image"], []))
    with output_set():  # every file of the audit, or none: an earlier audit stays whole
        write_outputs(out_dir, rows, pairs, small, cfg, top, src, log)
    return {"rows": rows, "duplicates": pairs, "out": str(out_dir)}


def check_ranges(top: int, hash_distance: int) -> None:
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise config_mod.ConfigError(f"--top {top}: give how many images the page shows, 0 or "
                                     "more (default 40)")
    if isinstance(hash_distance, bool) or not isinstance(hash_distance, int) \
            or not 0 <= hash_distance <= HASH_BITS:
        raise config_mod.ConfigError(f"--hash-distance {hash_distance}: give how many of the "
                                     f"{HASH_BITS} bits of a hash may differ, 0 to {HASH_BITS} "
                                     f"(default {HASH_DISTANCE})")


def write_outputs(out_dir: Path, rows: list[dict], pairs: list[dict], small: dict, cfg,
                  top: int, src, log) -> None:
    write_csv(out_dir / "audit.csv", rows)
    write_duplicates(out_dir / "duplicates.csv", pairs)
    shown = rows[:top]
    write_text(out_dir / "flagged.txt", "".join(f"{r['image']}\n" for r in shown))
    palette = class_palette(cfg.num_classes, cfg.data.class_colors)
    folder = out_dir / FILES
    thumbs = []
    for i, row in enumerate(shown, 1):
        it, mask, pred = small[row["image"]]
        image = read_image(it.image, cfg.model.in_channels)
        thumbs.append(write_thumbnails(folder, f"{i:04d}", image, mask, pred, palette))
    cross = [d for d in pairs if d["cross_split"]][:top]
    dup_thumbs = [(image_thumbnail(folder, f"dup{i:04d}-a", small[d["image_a"]][0].image),
                   image_thumbnail(folder, f"dup{i:04d}-b", small[d["image_b"]][0].image))
                  for i, d in enumerate(cross, 1)]
    n_cross = sum(d["cross_split"] for d in pairs)
    summary = (f"{plural(len(rows), 'image')} judged by {describe(src)}; the {len(shown)} most "
               f"suspicious of them, most suspicious first (all in audit.csv). {n_cross} "
               f"near-duplicate "
               f"pairs across splits, {len(pairs) - n_cross} within one (duplicates.csv).")
    write_page(out_dir / "audit.html", "unetkit audit: masks to check first", shown, thumbs,
               pairs, dup_thumbs, summary)
    log(f"wrote {out_dir / 'audit.csv'}, {out_dir / 'audit.html'} and "
        f"{out_dir / 'duplicates.csv'} ({n_cross} near-duplicate pairs across splits)")


def describe(src) -> str:
    if isinstance(src, FolderSource):
        return f"the probability maps in {src.folder}"
    if isinstance(src, PredictorSource):
        return f"the model {src.label}"
    return "out-of-fold models (each image by a model that did not train on it)"


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: fmt(row.get(k, "")) for k in COLUMNS})
    write_text(path, buf.getvalue())


def fmt(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.4f}")
    return value


def read_audit(path: str | Path) -> list[dict]:
    """audit.csv's rows as dicts (strings), most suspicious first."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
