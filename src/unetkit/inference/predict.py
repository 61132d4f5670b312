"""`unetkit predict` on image files: masks (and optionally overlays and probabilities) written
at each image's own size, in batches bounded by the pixel budget, never over an existing file.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from unetkit.core.files import (
    atomic_write,
    check_outputs,
    make_folder,
    output_set,
    refuse_special,
)
from unetkit.data.folders import list_images
from unetkit.inference.detection import PointError, check_point, foreground
from unetkit.inference.predictor import PixelGate, parallel_predictor
from unetkit.inference.summary import SUMMARY_FILES, summarize, write_summaries
from unetkit.io import plots
from unetkit.io.budget import MAX_BATCH_PIXELS, ImageError
from unetkit.io.images import check_pixel_budget, pixel_batches
from unetkit.io.plots import color_mask, overlay, save_png
from unetkit.runs.check import resolve_model_dir
from unetkit.runs.folder import RunError


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Image files from files and folders, in order; a missing path is an error."""
    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            files += list(list_images(path).values())
        elif path.exists():
            refuse_special(path, "an image file", ImageError)  # a FIFO or device: never read
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def output_stem(out_dir: Path, path: Path) -> Path:
    """out_dir/<the input's file stem>: outputs named after inputs never land outside out_dir."""
    stem = out_dir / Path(path.name).stem
    if not path.name or stem.resolve().parent != out_dir.resolve():
        raise ImageError(f"{path}: a mask named after this file would be written outside "
                         f"{out_dir}; rename the file")
    return stem


def planned_outputs(files: list[Path], out_dir: Path, binary: bool, overlays: bool,
                    probs: bool, colormap: str | None = None) -> list[tuple[Path, str]]:
    """Every (output file, input it is made from) `predict_files` will write."""
    planned = []
    for path in files:
        stem = output_stem(out_dir, path)
        names = [".png"] + (["_color.png"] if not binary else []) + \
            (["_overlay.png"] if overlays else []) + \
            ([("_prob.png" if binary else "_probs.npy")] if probs else []) + \
            (["_prob_color.png"] if probs and colormap else [])
        planned += [(Path(f"{stem}{suffix}"), str(path)) for suffix in names]
    return planned + [(out_dir / name, "the summary") for name in SUMMARY_FILES]


def predict_files(run_dir, inputs: list[str], out_dir, tta: bool = False,
                  threshold: float | None = None, min_area: float | None = None,
                  overlays: bool = False, probs: bool = False,
                  batch_size: int = 16, device: str | None = None, progress: bool = True,
                  tile: bool = False, tile_overlap: float = 0.5, backend: str = "torch",
                  style: str = "tint", colormap: str | None = None, log=print) -> dict:
    """Write a mask PNG per input image (0/255 for binary, class indices otherwise, at the
    image's size), plus a colour mask for multi-class models, overlays and probability maps on
    request, and summary.json / summary.csv (area, bounding box and connected components per
    class and image). `style`: overlays tint the prediction or outline it; `colormap` (a
    matplotlib colour map's name): also STEM_prob_color.png, the foreground probability in
    colour, beside the grey STEM_prob.png that `unetkit score` reads. Unreadable files and
    files over the pixel budget are reported and skipped; the rest are still predicted.
    Outputs that would replace an input, a run folder's file or each other are refused before
    anything is written. With ONNX Runtime, one image per core is read, predicted and written
    at once (`inference_workers`)."""
    check_prediction_options(threshold, tile_overlap, min_area)
    if colormap:
        try:
            plots.colormap(np.zeros((1, 1)), colormap)  # an unknown name fails before the work
        except ValueError as exc:
            raise RunError(f"--colormap: {exc}") from None
        if not probs:
            raise RunError("--colormap colours the probability maps: add --probs")
    predictor, workers = parallel_predictor(run_dir, device, backend, tta=tta,
                                            threshold=threshold, tile=tile,
                                            tile_overlap=tile_overlap, min_area=min_area)
    if tile or workers > 1:  # tiles are batched inside each image; whole large images are not
        batch_size = 1  # one image per ONNX Runtime worker: one thread gains nothing by batching
    out_dir = Path(out_dir)
    files = collect_inputs(inputs)
    binary = predictor.cfg.num_classes == 2
    failed: list[str] = []
    good, sizes = [], []
    for path in files:  # headers only: over-budget and unreadable files go before any work
        try:
            output_stem(out_dir, path)
            sizes.append(check_pixel_budget(path))
            good.append(path)
        except ImageError as exc:
            failed.append(str(exc))
            log(f"skipped: {exc}")
    check_outputs(planned_outputs(good, out_dir, binary, overlays, probs, colormap),
                  inputs=files,
                  input_dirs=[Path(n) for n in inputs if Path(n).is_dir()],
                  run_dirs=[resolve_model_dir(run_dir)])
    make_folder(out_dir)
    bar = tqdm(total=len(files), desc="predicting", unit="image", disable=not progress)
    bar.update(len(failed))
    gate = PixelGate(MAX_BATCH_PIXELS)

    def run_batch(batch: list[int]) -> tuple[list[dict], list[str]]:
        """Read, predict and write one batch (on one of `workers` threads)."""
        summaries, errors, chunk, images = [], [], [], []
        with gate.hold(sum(w * h for w, h in (sizes[i] for i in batch))):
            for path in (good[i] for i in batch):
                try:
                    images.append(predictor.read(path))
                    chunk.append(path)
                except ImageError as exc:
                    errors.append(str(exc))
                    log(f"skipped: {exc}")
            for path, img, p in zip(chunk, images, predictor.probabilities(images) if images
                                    else [], strict=True):
                labels = predictor.labels(p)
                summaries.append(summarize(path.name, labels, predictor.cfg.data.classes))
                stem = output_stem(out_dir, path)
                save_png(f"{stem}.png", labels * 255 if binary else labels)
                if not binary:
                    save_png(f"{stem}_color.png", color_mask(labels, predictor.palette))
                if overlays:
                    save_png(f"{stem}_overlay.png",
                             overlay(img, labels, predictor.palette, style=style))
                if probs:
                    if binary:
                        prob = (p[0] * 255).round().byte().cpu().numpy()
                        save_png(f"{stem}_prob.png", prob)
                    else:
                        arr = p.cpu().numpy().astype(np.float16)
                        atomic_write(f"{stem}_probs.npy", lambda f, a=arr: np.save(f, a))
                    if colormap:
                        save_png(f"{stem}_prob_color.png",
                                 plots.colormap(foreground(p), colormap))
        bar.update(len(batch))
        return summaries, errors

    # Batches of a share of the pixel budget, so that `workers` of them fit in it side by side;
    # results are gathered in the inputs' order.
    summaries: list[dict] = []
    batches = pixel_batches(sizes, batch_size, MAX_BATCH_PIXELS // workers)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="unetkit-predict") if workers > 1 \
        else None  # one at a time: in this thread, whose memory the pixel budget was set for
    with output_set():  # the masks and the summary together, or none (an earlier result stays)
        context = contextvars.copy_context()  # the threads write into this set too

        def in_set(batch: list[int]):
            return context.copy().run(run_batch, batch)

        try:
            for done, errors in (pool.map if pool else map)(in_set, batches):
                summaries += done
                failed += errors
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)  # an error stops the batches not yet started
        bar.close()
        if summaries:
            write_summaries(out_dir, summaries)
    return {"written": len(summaries), "failed": failed, "out": str(out_dir)}


def check_prediction_options(threshold: float | None, tile_overlap: float,
                             min_area: float | None = None) -> None:
    """Options out of range fail before the model is even loaded."""
    try:
        check_point(threshold, min_area)
    except PointError as exc:
        raise RunError(str(exc)) from None
    if not 0 <= tile_overlap < 1:
        raise RunError(f"--tile-overlap must be at least 0 and below 1, got {tile_overlap}")
