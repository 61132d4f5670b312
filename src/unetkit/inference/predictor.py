"""Prediction with a trained model: any image size in, a mask at the image's own size out.

`Predictor` holds a model with its run's pre- and post-processing: the run's `Preprocess` (the
same decode, resize and normalisation as training, see `preprocess`), run the model
(optionally with test-time augmentation), bring the logits back to each image's size
(bilinear), turn them into class probabilities (sigmoid or softmax), then threshold (binary) or
argmax (multi-class).

Logits, not probabilities, are resized, as PraNet's and nnU-Net's test code do: a probability
map enlarged 4x (a 160 px output on a 600 px photo) ramps from 0 to 1 over 4 pixels at every
boundary, while the enlarged logits, squashed afterwards, keep the step within 1 or 2; the
literature's threshold-averaged scores (mDice over 256 thresholds) would read that ramp as
doubt the network never had.

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
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from unetkit.core.choices import BACKENDS
from unetkit.data.preprocess import Preprocess
from unetkit.inference.detection import (
    OperatingPoint,
    labels_at,
    read_operating_point,
    resolve_point,
)
from unetkit.inference.tiling import sliding_window
from unetkit.io.budget import ImageError
from unetkit.io.images import to_array
from unetkit.io.plots import class_palette
from unetkit.runs.check import check_onnx_model, resolve_model_dir, run_config
from unetkit.runs.folder import RunError
from unetkit.runs.loading import load_model

Image = str | Path | np.ndarray  # what `Predictor.predict` takes: a file or a uint8 array

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
    """A trained model with its run's pre- and post-processing: images in, masks out.

        predictor = Predictor.from_run("runs/kvasir-binary")    # or hf://user/name
        mask = predictor.predict("polyp.jpg")                   # (H, W) uint8 class indices
        masks = predictor.predict([array1, "b.png"])            # a list in, a list out
        probs = predictor.probabilities([array1])               # (K, H, W) tensors

    `model`: a `torch.nn.Module` (or an ONNX model); `cfg`: its run's configuration. `tta`
    averages over flips; `threshold` / `min_area` override the run's operating point (`point`,
    read from the run folder by `from_run`); `tile` slides a window of the training size over
    large images instead of resizing them.
    """

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
        self.point = point  # the run's calibrated point, if any (see detection.resolve_point)
        resolved, self.point_source = resolve_point(cfg, point, threshold, min_area,
                                                    default_min_area)
        self.threshold, self.min_area = resolved.threshold, resolved.min_area
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
            from unetkit.inference.onnx import OnnxModel

            path = run_dir / ONNX_FILES[backend]
            if not path.exists():
                extra = " --data DATA_DIR" if backend == "int8" else ""
                raise RunError(f"{path}: no ONNX model; make it with `unetkit export {run_dir} "
                               f"--format {backend}{extra}` (it writes {path}), or copy the "
                               f"file an export with --out wrote there")
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
        return self._probabilities(logits, sizes)

    @torch.no_grad()
    def probabilities_of(self, batch: torch.Tensor,
                         sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """`probabilities` from a batch `inputs` made: the video path prepares the next
        frame's input on its decoding thread while this one runs the network."""
        return self._probabilities(self.logits(batch), sizes)

    @staticmethod
    def _probabilities(logits, sizes) -> list[torch.Tensor]:
        """Per image, its (K, h, w) logits resized to its size (bilinear), then class
        probabilities: sigmoid for one channel, else softmax (the module docstring says why
        in this order)."""
        out = []
        for lg, size in zip(logits, sizes, strict=True):
            if tuple(lg.shape[-2:]) != tuple(size):
                lg = F.interpolate(lg[None], size=tuple(size), mode="bilinear",
                                   align_corners=False)[0]
            out.append(torch.sigmoid(lg) if lg.shape[0] == 1 else lg.softmax(0))
        return out

    def labels(self, probs: torch.Tensor) -> np.ndarray:
        """(K, H, W) probabilities -> (H, W) uint8 class indices."""
        if probs.shape[0] == 1 or self.point or self.min_area:
            return labels_at(probs, self.threshold, self.min_area)
        return probs.argmax(0).to(torch.uint8).cpu().numpy()

    def predict(self, images: Image | list[Image], batch_size: int = 16
                ) -> np.ndarray | list[np.ndarray]:
        """Masks for one image, or for a list of images.

        An image is a file's path (str or Path), or a uint8 array: (H, W) grey, or (H, W, C)
        with C = 1, 3 (RGB, as PIL and imageio give; OpenCV's BGR needs `[..., ::-1]`) or 4.
        Any size: the image is resized to the model's input and the mask back to the image's
        size.

        Returns, for one image, one (H, W) uint8 array of class indices (binary models: 0
        background, 1 foreground; multi-class: 0..K-1 as `cfg.data.classes` names them); for
        a list, a list of such masks in the same order. The run's operating point (threshold,
        minimum area) applies, as in `unetkit predict`.
        """
        single = not isinstance(images, (list, tuple))
        arrays = [self.image(x) for x in ([images] if single else images)]
        masks = [self.labels(p) for i in range(0, len(arrays), batch_size)
                 for p in self.probabilities(arrays[i:i + batch_size])]
        return masks[0] if single else masks

    def image(self, image: Image) -> np.ndarray:
        """One image (a path or an array, see `predict`) as the (H, W, C) uint8 array the
        model's preprocessing takes."""
        if isinstance(image, (str, Path)):
            return self.read(image)
        if not isinstance(image, np.ndarray):
            raise ImageError(f"an image is a file path or a NumPy array, not "
                             f"{type(image).__name__}")
        if image.dtype != np.uint8:
            raise ImageError(f"an image array must be uint8 (0..255), not {image.dtype}; "
                             "e.g. (x * 255).round().astype(np.uint8) for values in [0, 1]")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ImageError(f"an image array is (H, W) or (H, W, C) with C = 1, 3 or 4; got "
                             f"shape {image.shape}")
        return to_array(PILImage.fromarray(image), self.channels)


def parallel_predictor(run_dir, device: str | None, backend: str,
                       **kwargs) -> tuple[Predictor, int]:
    """A Predictor for a run folder and how many calls to make on it at once
    (`inference_workers`); with more than one, each ONNX Runtime call runs on one thread."""
    workers = inference_workers(backend)
    return Predictor.from_run(run_dir, device, backend, threads=1 if workers > 1 else None,
                              **kwargs), workers
