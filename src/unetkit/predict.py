"""Prediction with a trained model: any image size in, a mask at the image's own size out.

`Predictor` holds a model with its run's pre- and post-processing: the run's `Preprocess` (the
same decode, resize and normalisation as training, see `preprocess`), run the model
(optionally with test-time augmentation), bring the
class probabilities back to each image's size, then threshold (binary) or argmax (multi-class).

With `tile=True` images are not resized: a window of the training size slides over the image at
its own resolution (see `tiling`), for large images whose detail a resize would lose. The model
can be the PyTorch module or an exported ONNX file run by ONNX Runtime (`backend="onnx"`); the
pre- and post-processing are the same code either way.

Test-time augmentation averages the logits over the horizontal, vertical and double flips, and,
when the run declares `data.rotation_invariant` and trained on square images, over the 90-degree
rotations too (8 views: the dihedral group). Rotations are opt-in because most photos have an
"up" (a car's wheels are at the bottom) while microscopy does not.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import list_images
from .detection import OPERATING_POINT_FILE, OperatingPoint, labels_at, read_operating_point
from .files import atomic_write, check_outputs
from .images import MAX_BATCH_PIXELS, ImageError, check_pixel_budget, pixel_batches
from .loading import load_model
from .plots import class_palette, color_mask, overlay, save_png
from .preprocess import Preprocess
from .runcheck import check_onnx_model
from .runs import RunError, resolve_model_dir, run_config
from .summary import summarize, write_summaries
from .tiling import sliding_window

BACKENDS = ("torch", "onnx", "int8")
# The ONNX files a run folder may hold: `unetkit export RUN --format onnx|int8` writes them.
ONNX_FILES = {"onnx": "model.onnx", "int8": "model.int8.onnx"}


def inference_workers(backend: str) -> int:
    """How many images (or video frames) the network runs at once. ONNX Runtime: one per core,
    each session call on one thread (its sessions take concurrent calls): a small network's
    layers are too short to share out over cores well, and on 2 cores two frames on one thread
    each run 1.1-1.4x the frames/s of one frame on two threads (RESULTS.md, video). PyTorch: one
    at a time on all its threads (its thread count is process-wide)."""
    if backend not in ONNX_FILES:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


class PixelGate:
    """At most `budget` image pixels held by the workers at once, so that running batches side by
    side needs no more memory than one batch of the budget; a batch over it runs alone."""

    def __init__(self, budget: int):
        self.budget, self.free, self.cond = budget, budget, threading.Condition()

    @contextmanager
    def hold(self, pixels: int):
        pixels = min(pixels, self.budget)
        with self.cond:
            self.cond.wait_for(lambda: self.free >= pixels)
            self.free -= pixels
        try:
            yield
        finally:
            with self.cond:
                self.free += pixels
                self.cond.notify_all()


class Predictor:
    def __init__(self, model, cfg, device: str | torch.device = "cpu", tta: bool = False,
                 threshold: float | None = None, tile: bool = False, tile_overlap: float = 0.5,
                 min_area: float | None = None, point: OperatingPoint | None = None,
                 default_min_area: float = 0.0):
        if isinstance(model, torch.nn.Module):
            model = model.to(device).eval()
        self.model, self.cfg, self.device = model, cfg, torch.device(device)
        self.tta, self.tile, self.tile_overlap = tta, tile, tile_overlap
        self.rotations = tta and cfg.data.rotation_invariant and \
            cfg.data.image_size[0] == cfg.data.image_size[1]
        # The one place the operating point is resolved: a given threshold or min_area first,
        # then the run's calibrated point (see detection.py), then the training threshold and
        # `default_min_area` (0 keeps every pixel; frame-level alarms pass their own default).
        self.point = point
        default = point.threshold if point else cfg.train.threshold
        self.threshold = default if threshold is None else threshold
        default = point.min_area if point else default_min_area
        self.min_area = default if min_area is None else min_area
        self.point_source = ("options" if threshold is not None or min_area is not None
                             else OPERATING_POINT_FILE if point else "defaults")
        self.preprocess = Preprocess.from_config(cfg)
        self.size, self.channels = self.preprocess.size, self.preprocess.channels
        self.palette = class_palette(cfg.num_classes, cfg.data.class_colors)

    @classmethod
    def from_run(cls, run_dir, device: str | None = None, backend: str = "torch",
                 threads: int | None = None, **kwargs) -> Predictor:
        """A Predictor for a run folder (or hf://user/name); `backend="onnx"` runs the run's
        exported `model.onnx` (made by `unetkit export RUN_DIR --format onnx`) instead, and
        `backend="int8"` its int8 quantisation `model.int8.onnx` (`--format int8`), on
        `threads` threads per call (None: ONNX Runtime's default, one per core)."""
        run_dir = resolve_model_dir(run_dir)
        if backend in ONNX_FILES:
            from .export import OnnxModel

            path = run_dir / ONNX_FILES[backend]
            if not path.exists():
                extra = " --data DATA_DIR" if backend == "int8" else ""
                raise RunError(f"{path}: no ONNX model; make it with `unetkit export {run_dir} "
                               f"--format {backend}{extra} --out {path}`")
            onnx_model, cfg = OnnxModel(path, threads), run_config(run_dir)
            check_onnx_model(onnx_model.session, cfg, path)
            return cls(onnx_model, cfg, "cpu", point=read_operating_point(run_dir), **kwargs)
        if backend != "torch":
            raise RunError(f"unknown backend '{backend}'; use one of {', '.join(BACKENDS)}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(load_model(run_dir, device), run_config(run_dir), device,
                   point=read_operating_point(run_dir), **kwargs)

    def views(self):
        """(transform, inverse) pairs over which TTA averages; the identity alone without TTA."""
        views = [((), 0)]
        if self.tta:
            views += [((-1,), 0), ((-2,), 0), ((-2, -1), 0)]
        if self.rotations:
            views += [((), 1), ((), 3), ((-1,), 1), ((-1,), 3)]  # with the flips: all 8 symmetries
        return views

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits for a normalised (B, C, H, W) batch, averaged over the TTA views."""
        out = None
        for flip, rot in self.views():
            x = batch.flip(flip) if flip else batch
            x = torch.rot90(x, rot, (-2, -1)) if rot else x
            y = self.model(x).float()
            y = torch.rot90(y, -rot, (-2, -1)) if rot else y
            y = y.flip(flip) if flip else y
            out = y if out is None else out + y
        return out / len(self.views())

    def read(self, path: str | Path) -> np.ndarray:
        """An image file decoded as training decoded it; `ImageError` names a bad file."""
        return self.preprocess.decode(path)

    def inputs(self, images: list[np.ndarray]) -> torch.Tensor:
        """The network's input for (H, W, C) uint8 images of any sizes: exactly what training
        fed it for the same files."""
        return self.preprocess(np.stack([self.preprocess.resize(img) for img in images]),
                               self.device)

    @torch.no_grad()
    def probabilities(self, images: list[np.ndarray],
                      sizes: list[tuple[int, int]] | None = None) -> list[torch.Tensor]:
        """Per image, (K, H, W) class probabilities (K=1 for binary) at the image's own size, or
        at `sizes[i]` when given (e.g. a shrunk copy shown on a page)."""
        sizes = sizes or [img.shape[:2] for img in images]
        if not self.tile:
            return self.probabilities_of(self.inputs(images), sizes)
        logits = [sliding_window(self.logits, self.preprocess(img[None], self.device),
                                 self.size, self.tile_overlap)[0] for img in images]
        return [self._resized(self._softmax(lg[None])[0], size)
                for lg, size in zip(logits, sizes, strict=True)]

    @torch.no_grad()
    def probabilities_of(self, batch: torch.Tensor,
                         sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """`probabilities` from a batch `inputs` made: the video path prepares the next
        frame's input on its decoding thread while this one runs the network."""
        probs = self._softmax(self.logits(batch))
        return [self._resized(p, size) for p, size in zip(probs, sizes, strict=True)]

    @staticmethod
    def _softmax(logits: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) logits -> probabilities: sigmoid for one channel, else softmax."""
        return torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(1)

    @staticmethod
    def _resized(p: torch.Tensor, size) -> torch.Tensor:
        if tuple(p.shape[-2:]) == tuple(size):
            return p
        return F.interpolate(p[None], size=tuple(size), mode="bilinear", align_corners=False)[0]

    def labels(self, probs: torch.Tensor) -> np.ndarray:
        """(K, H, W) probabilities -> (H, W) uint8 class indices."""
        if probs.shape[0] == 1 or self.point or self.min_area:
            return labels_at(probs, self.threshold, self.min_area)
        return probs.argmax(0).to(torch.uint8).cpu().numpy()

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """(H, W, C) uint8 images of any sizes -> (H, W) uint8 class maps at the same sizes."""
        return [self.labels(p) for p in self.probabilities(images)]


def parallel_predictor(run_dir, device: str | None, backend: str,
                       **kwargs) -> tuple[Predictor, int]:
    """A Predictor for a run folder and how many calls to make on it at once
    (`inference_workers`); with more than one, each ONNX Runtime call runs on one thread."""
    workers = inference_workers(backend)
    return Predictor.from_run(run_dir, device, backend, threads=1 if workers > 1 else None,
                              **kwargs), workers


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Image files from files and folders, in order; a missing path is an error."""
    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            files += list(list_images(path).values())
        elif path.is_file():
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
                    probs: bool) -> list[tuple[Path, str]]:
    """Every (output file, input it is made from) `predict_files` will write."""
    planned = []
    for path in files:
        stem = output_stem(out_dir, path)
        names = [".png"] + (["_color.png"] if not binary else []) + \
            (["_overlay.png"] if overlays else []) + \
            ([("_prob.png" if binary else "_probs.npy")] if probs else [])
        planned += [(Path(f"{stem}{suffix}"), str(path)) for suffix in names]
    return planned + [(out_dir / name, "the summary") for name in ("summary.json", "summary.csv")]


def predict_files(run_dir, inputs: list[str], out_dir, tta: bool = False,
                  threshold: float | None = None, min_area: float | None = None,
                  overlays: bool = False, probs: bool = False,
                  batch_size: int = 16, device: str | None = None, progress: bool = True,
                  tile: bool = False, tile_overlap: float = 0.5, backend: str = "torch",
                  log=print) -> dict:
    """Write a mask PNG per input image (0/255 for binary, class indices otherwise, at the
    image's size), plus a colour mask for multi-class models, overlays and probability maps on
    request, and summary.json / summary.csv (area, bounding box and connected components per
    class and image). Unreadable files and files over the pixel budget are reported and
    skipped; the rest are still predicted. Outputs that would replace an input, a run folder's
    file or each other are refused before anything is written. With ONNX Runtime, one image
    per core is read, predicted and written at once (`inference_workers`)."""
    check_prediction_options(threshold, tile_overlap)
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
    check_outputs(planned_outputs(good, out_dir, binary, overlays, probs), inputs=files,
                  input_dirs=[Path(n) for n in inputs if Path(n).is_dir()],
                  run_dirs=[resolve_model_dir(run_dir)])
    out_dir.mkdir(parents=True, exist_ok=True)
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
                    save_png(f"{stem}_overlay.png", overlay(img, labels, predictor.palette))
                if probs:
                    if binary:
                        prob = (p[0] * 255).round().byte().cpu().numpy()
                        save_png(f"{stem}_prob.png", prob)
                    else:
                        arr = p.cpu().numpy().astype(np.float16)
                        atomic_write(f"{stem}_probs.npy", lambda f, a=arr: np.save(f, a))
        bar.update(len(batch))
        return summaries, errors

    # Batches of a share of the pixel budget, so that `workers` of them fit in it side by side;
    # results are gathered in the inputs' order.
    summaries: list[dict] = []
    batches = pixel_batches(sizes, batch_size, MAX_BATCH_PIXELS // workers)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="unetkit-predict") if workers > 1 \
        else None  # one at a time: in this thread, whose memory the pixel budget was set for
    try:
        for done, errors in (pool.map if pool else map)(run_batch, batches):
            summaries += done
            failed += errors
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)  # an error stops the batches not yet started
    bar.close()
    if summaries:
        write_summaries(out_dir, summaries)
    return {"written": len(summaries), "failed": failed, "out": str(out_dir)}


def check_prediction_options(threshold: float | None, tile_overlap: float) -> None:
    """Options out of range fail before the model is even loaded."""
    if threshold is not None and not 0 < threshold < 1:
        raise RunError(f"--threshold must be between 0 and 1 (exclusive), got {threshold}")
    if not 0 <= tile_overlap < 1:
        raise RunError(f"--tile-overlap must be at least 0 and below 1, got {tile_overlap}")
