"""`score_folders`: a folder of prediction maps against a folder of masks, with the polyp
literature's metrics (field_metrics), one image at a time (only per-image numbers are kept).

Maps: PNG/JPEG/BMP/TIFF..., read by `unetkit.io.maps` (the reader of every verb taking maps):
8-bit as they are, 16-bit as round(v/257), probability or binary.
Masks: any image format (TIFF through tifffile), decoded by `unetkit.io.images.MaskDecoder` as
declared (the reader of `check-data` and `evaluate`): by default binary with foreground > 128;
a mask that does not look so (colour, 0/1, mid-grey) is refused with the option that reads it.
Stems pair them up.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from unetkit.core.files import check_outputs, output_set, refuse_special, write_text
from unetkit.evaluation.field_metrics import METRICS, FieldMetrics, score_pair, to_uint8_map
from unetkit.inference.summary import SUMMARY_FILES
from unetkit.io.budget import ImageError
from unetkit.io.images import IMAGE_EXTENSIONS, MaskDecoder, read_checked_mask
from unetkit.io.maps import foreground_plane
from unetkit.io.maps import read_map as read_map_planes

OUTPUT_FILES = ("scores.json", "scores.csv", "table.md", "table.csv")
# The papers' column order (PraNet, Polyp-PVT...), then the extras.
COLUMNS = (("mDice", "mDice"), ("mIoU", "mIoU"), ("wFm", "wFβ"), ("Sm", "Sα"),
           ("meanEm", "mean Eφ"), ("maxEm", "max Eφ"), ("MAE", "MAE"),
           ("maxDice", "max Dice"), ("adpEm", "adaptive Eφ"))
SHOW = 10  # files named in an error before "... and N more"
MIN_PARALLEL = 32  # fewer images are scored in this process (starting workers costs more)


class ScoreError(ValueError):
    """Maps and masks that cannot be scored; the message names the files and the fix."""


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:SHOW])
    return shown + (f" ... and {len(names) - SHOW} more" if len(names) > SHOW else "")


PROB_SUFFIX = "_prob"  # `unetkit predict --probs` writes STEM_prob.png beside its masks


def _maps_of_predict(folder: Path, suffix: str | None) -> tuple[str, tuple[str, ...]]:
    """(suffix of the maps' names, files to skip) for the maps folder. A folder `unetkit
    predict` wrote holds its summaries (skipped) and, with --probs, STEM_prob.png maps: those,
    not the 0/255 masks beside them, are what the 256-threshold columns need, so they are
    taken unless `suffix` is given."""
    if not all((folder / name).is_file() for name in SUMMARY_FILES):
        return suffix or "", ()
    if suffix is None and any(folder.glob(f"*{PROB_SUFFIX}.png")):
        suffix = PROB_SUFFIX
    return suffix or "", SUMMARY_FILES


def _images(folder: Path, what: str, suffix: str = "",
            skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """Stem -> file of the images in a folder; other files are an error naming them (but the
    names in `skip`). With a suffix, only files whose stem ends with it count (stem without
    it); the rest is ignored."""
    if not folder.is_dir():
        raise ScoreError(f"{folder}: no such folder of {what}")
    found: dict[str, Path] = {}
    others, twice = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir() or path.name in skip:
            continue  # hidden files (.DS_Store) and subfolders are not part of the set
        refuse_special(path, f"an image file ({what})", ScoreError)  # a FIFO would hang
        stem = path.stem
        if suffix:
            if not stem.endswith(suffix) or stem == suffix:
                continue  # e.g. the masks and summaries `unetkit predict` writes beside maps
            stem = stem[:-len(suffix)]
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            others.append(path.name)
        elif stem in found:
            twice.append(f"{found[stem].name} / {path.name}")
        else:
            found[stem] = path
    if others:
        raise ScoreError(f"{folder}: {len(others)} file(s) that are not images: "
                         f"{_listing(others)}; move them out of the {what} folder")
    if twice:
        raise ScoreError(f"{folder}: {len(twice)} stem(s) with two files: {_listing(twice)}; "
                         f"keep one file per stem in the {what} folder")
    return found


# The mask settings as `score` spells them in its messages (see MaskDecoder.names).
OPTION_NAMES = {"encoding": "--mask-encoding", "threshold": "--mask-threshold",
                "colors": "--class-colors", "classes": "--classes"}
FIELD_THRESHOLD = 129  # the field's masks: foreground is > 128


def mask_decoder(encoding: str = "binary", threshold: int | None = None,
                 colors: list[list[int]] | None = None, classes: int = 2) -> MaskDecoder:
    """The decoder of the truth masks, as declared to `score` (binary: grey >= threshold;
    color: nearest of `colors`, background first; index: values are class indices)."""
    if encoding not in ("binary", "color", "index"):
        raise ScoreError(f"--mask-encoding {encoding}: give binary, color or index")
    if encoding == "color":
        if not colors or len(colors) < 2:
            raise ScoreError("--mask-encoding color needs --class-colors with the background's "
                             "colour first, e.g. --class-colors 0,0,0 255,0,0")
        classes = len(colors)
    threshold = FIELD_THRESHOLD if threshold is None else threshold
    if not 1 <= threshold <= 255:
        raise ScoreError(f"--mask-threshold {threshold}: give a grey level in 1..255")
    return MaskDecoder(encoding, classes, threshold, colors, names=OPTION_NAMES)


def read_map(path: str | Path) -> np.ndarray:
    """A prediction map as the field's uint8 0-255 grey map (16-bit: round(v/257)), read by
    `unetkit.io.maps` (a multi-plane map: its foreground)."""
    return to_uint8_map(foreground_plane(read_map_planes(path)))


def read_truth(path: str | Path, decoder: MaskDecoder | None = None) -> np.ndarray:
    """A mask as bool (any foreground class), decoded as declared (default: grey > 128), or
    `ImageError` with the fix when it does not look encoded so."""
    return read_checked_mask(path, decoder or mask_decoder()) > 0


def _score_files(item: tuple[str, Path, Path, MaskDecoder]):
    """One pair's (scores, curves), or the reading error's message (run in a worker)."""
    _, map_path, mask_path, decoder = item
    try:
        return score_pair(read_map(map_path), read_truth(mask_path, decoder))
    except ImageError as exc:
        return str(exc)


def _scored(items: list, workers: int):
    if workers <= 1 or len(items) < MIN_PARALLEL:
        yield from map(_score_files, items)
        return
    # fork: workers start at once (no re-import); they use numpy and Pillow only.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
    try:
        yield from pool.map(_score_files, items, chunksize=8)
    finally:  # an error stops the rest at once
        pool.shutdown(cancel_futures=True)


def _check_folders(maps_dir: Path, masks_dir: Path) -> None:
    if maps_dir.is_dir() and masks_dir.is_dir() and maps_dir.resolve() == masks_dir.resolve():
        raise ScoreError(f"{maps_dir} is given as both the maps and the masks; give the "
                         "folder of predicted maps first and the truth masks with --masks")


def _check_out(out: Path, maps_dir: Path, masks_dir: Path) -> None:
    check_outputs([(out / name, "the scores") for name in OUTPUT_FILES],
                  input_dirs=[maps_dir, masks_dir])
    out_r = out.resolve()
    for folder, what in ((maps_dir, "maps"), (masks_dir, "masks")):
        if out_r == folder.resolve():
            raise ScoreError(f"{out}: this is the {what} folder; write the scores to another "
                             "folder (--out DIR)")
    if out.exists() and not out.is_dir():
        raise ScoreError(f"{out}: a file, not a folder; --out names a folder for the scores")
    taken = [name for name in OUTPUT_FILES if (out / name).exists()]
    if taken:
        raise ScoreError(f"{out}: already holds {', '.join(taken)}; unetkit does not write "
                         "over them: choose another --out folder or delete them")


def score_folders(maps_dir: str | Path, masks_dir: str | Path, *, pairs: str = "all",
                  out: str | Path | None = None, progress: bool = True,
                  workers: int | None = None, suffix: str | None = None,
                  decoder: MaskDecoder | None = None) -> dict:
    """Score every map against the mask of the same stem.

    pairs="all": a map without a mask or a mask without a map is a `ScoreError` listing them;
    pairs="existing": only the pairs that exist are scored, the others are named in the result.
    out: a folder for scores.json, scores.csv (per image), table.md and table.csv.
    suffix: only maps named STEM + suffix count, e.g. "_prob" for the STEM_prob.png maps
    `unetkit predict --probs` writes beside its masks; None: "_prob" in a folder predict wrote
    with --probs, else "" (the result's "suffix" says which).
    workers: processes scoring images (default: the CPU count, at most 4); the result is the
    same for any number (images are added in stem order).
    decoder: how the masks are encoded (`mask_decoder`; default binary, foreground > 128).
    A set whose every mask is empty is a `ScoreError` (nothing to score: a misread encoding).
    Returns {"metrics": data-set scores, "images", "resized", "per_image": [...],
    "maps_without_mask": [...], "masks_without_map": [...], ...}.
    """
    if pairs not in ("all", "existing"):
        raise ValueError(f"pairs must be 'all' or 'existing', not {pairs!r}")
    maps_dir, masks_dir = Path(maps_dir), Path(masks_dir)
    _check_folders(maps_dir, masks_dir)
    decoder = decoder or mask_decoder()
    if out is not None:
        _check_out(Path(out), maps_dir, masks_dir)
    suffix, skip = _maps_of_predict(maps_dir, suffix)
    maps, masks = _images(maps_dir, "maps", suffix, skip), _images(masks_dir, "masks")
    no_mask = sorted(maps[s].name for s in maps.keys() - masks.keys())
    no_map = sorted(masks[s].name for s in masks.keys() - maps.keys())
    if pairs == "all" and (no_mask or no_map):
        parts = [f"{len(no_mask)} map(s) in {maps_dir} without a mask: {_listing(no_mask)}"
                 if no_mask else "",
                 f"{len(no_map)} mask(s) in {masks_dir} without a map: {_listing(no_map)}"
                 if no_map else ""]
        raise ScoreError("maps and masks do not pair up by stem: " + "; ".join(p for p in parts
                         if p) + ". Rename them to match, or score only the existing pairs "
                         "(pairs='existing', `unetkit score --existing-only`)")
    stems = sorted(maps.keys() & masks.keys())
    if not stems:
        raise ScoreError(f"no map in {maps_dir} has a mask of the same stem in {masks_dir}")
    metrics, rows = FieldMetrics(), []
    workers = min(os.cpu_count() or 1, 4) if workers is None else workers
    items = [(stem, maps[stem], masks[stem], decoder) for stem in stems]
    bar = tqdm(total=len(items), desc="score", unit="image",
               disable=not progress or len(items) < 50)
    for (stem, map_path, mask_path, _), done in zip(items, _scored(items, workers), strict=True):
        if isinstance(done, str):
            raise ScoreError(done)
        scores = metrics.record(*done)
        rows.append({"stem": stem, "map": map_path.name, "mask": mask_path.name, **scores})
        bar.update()
    bar.close()
    total = metrics.results()
    if total["empty_truth"] == total["images"]:
        raise ScoreError(f"every one of the {total['images']} masks in {masks_dir} is empty "
                         "(no foreground pixel): nothing to score. Check the masks folder, or "
                         "declare how they are encoded (--mask-encoding, --mask-threshold, "
                         "--class-colors)")
    result = {"metrics": {name: total[name] for name in METRICS}, "images": total["images"],
              "resized": total["resized"], "empty_truth": total["empty_truth"],
              "resize_rule": "bilinear on the 0-1 map (align_corners=False) to the mask's size",
              "maps_dir": str(maps_dir), "suffix": suffix, "masks_dir": str(masks_dir),
              "maps_without_mask": no_mask, "masks_without_map": no_map,
              "curves": total["curves"], "per_image": rows}
    if out is not None:
        write_outputs(result, Path(out))
    return result


def table_markdown(result: dict, name: str | None = None) -> str:
    """The papers' table: one row of the data-set scores (3 decimals)."""
    name = name or Path(result["maps_dir"]).name
    head = ["maps", *(title for _, title in COLUMNS), "images", "empty truth"]
    cells = [name, *(f"{result['metrics'][key]:.3f}" for key, _ in COLUMNS),
             str(result["images"]), str(result["empty_truth"])]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|",
             "| " + " | ".join(cells) + " |"]
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out: Path) -> None:
    """scores.json, scores.csv, table.md and table.csv, written together (`output_set`)."""
    with output_set():
        _write_outputs(result, out)


def _write_outputs(result: dict, out: Path) -> None:
    write_text(out / "scores.json", json.dumps(result, indent=1) + "\n")
    fields = ["stem", "map", "mask", "resized", *METRICS]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(result["per_image"])
    write_text(out / "scores.csv", buf.getvalue())
    write_text(out / "table.md", table_markdown(result))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["maps", *(title for _, title in COLUMNS), "images"])
    writer.writerow([Path(result["maps_dir"]).name,
                     *(f"{result['metrics'][key]:.6f}" for key, _ in COLUMNS), result["images"]])
    write_text(out / "table.csv", buf.getvalue())
