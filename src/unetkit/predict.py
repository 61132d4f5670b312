"""Prediction with a trained model: any image size in, a mask at the image's own size out.

`Predictor` holds a model with its run's pre- and post-processing: resize to the training size,
normalise as in training, run the model (optionally with flip test-time augmentation), bring the
class probabilities back to each image's size, then threshold (binary) or argmax (multi-class).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import list_images
from .images import ImageError, read_image, resize_image
from .plots import class_palette, color_mask, overlay, save_png
from .runs import load_model, run_config, resolve_model_dir


class Predictor:
    def __init__(self, model: torch.nn.Module, cfg, device: str | torch.device = "cpu",
                 tta: bool = False, threshold: float | None = None):
        self.model, self.cfg, self.device = model.to(device).eval(), cfg, torch.device(device)
        self.tta = tta
        self.threshold = cfg.train.threshold if threshold is None else threshold
        self.size = tuple(cfg.data.image_size)
        self.channels = cfg.model.in_channels
        self.mean = torch.tensor(cfg.data.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(cfg.data.std, device=self.device).view(1, -1, 1, 1)
        self.palette = class_palette(cfg.num_classes, cfg.data.class_colors)

    @classmethod
    def from_run(cls, run_dir, device: str | None = None, **kwargs) -> "Predictor":
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        run_dir = resolve_model_dir(run_dir)
        return cls(load_model(run_dir, device), run_config(run_dir), device, **kwargs)

    @torch.no_grad()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits for a normalised (B, C, H, W) batch, averaged over flips with TTA."""
        if not self.tta:
            return self.model(batch).float()
        out = self.model(batch).float()
        for dims in ((-1,), (-2,), (-2, -1)):
            out += self.model(batch.flip(dims)).float().flip(dims)
        return out / 4

    @torch.no_grad()
    def probabilities(self, images: list[np.ndarray]) -> list[torch.Tensor]:
        """Per image, (K, H, W) class probabilities at the image's own size (K=1 for binary)."""
        resized = np.stack([resize_image(img, self.size) for img in images])
        x = torch.from_numpy(resized).to(self.device).permute(0, 3, 1, 2).float() / 255
        logits = self.logits((x - self.mean) / self.std)
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(1)
        return [F.interpolate(p[None], size=img.shape[:2], mode="bilinear", align_corners=False)[0]
                for p, img in zip(probs, images)]

    def labels(self, probs: torch.Tensor) -> np.ndarray:
        """(K, H, W) probabilities -> (H, W) uint8 class indices."""
        if probs.shape[0] == 1:
            return (probs[0] > self.threshold).to(torch.uint8).cpu().numpy()
        return probs.argmax(0).to(torch.uint8).cpu().numpy()

    def predict(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """(H, W, C) uint8 images of any sizes -> (H, W) uint8 class maps at the same sizes."""
        return [self.labels(p) for p in self.probabilities(images)]


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


def predict_files(run_dir, inputs: list[str], out_dir, tta: bool = False,
                  threshold: float | None = None, overlays: bool = False, probs: bool = False,
                  batch_size: int = 16, device: str | None = None, progress: bool = True,
                  log=print) -> dict:
    """Write a mask PNG per input image (0/255 for binary, class indices otherwise, at the
    image's size), plus a colour mask for multi-class models, overlays and probability maps on
    request. Unreadable files are reported and skipped; the rest are still predicted."""
    predictor = Predictor.from_run(run_dir, device, tta=tta, threshold=threshold)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = collect_inputs(inputs)
    binary = predictor.cfg.num_classes == 2
    failed: list[str] = []
    written = 0
    bar = tqdm(total=len(files), desc="predicting", unit="image", disable=not progress)
    for start in range(0, len(files), batch_size):
        chunk, images = [], []
        for path in files[start:start + batch_size]:
            try:
                output_stem(out_dir, path)
                images.append(read_image(path, predictor.channels))
                chunk.append(path)
            except ImageError as exc:
                failed.append(str(exc))
                log(f"skipped: {exc}")
        if images:
            for path, img, p in zip(chunk, images, predictor.probabilities(images)):
                labels = predictor.labels(p)
                stem = output_stem(out_dir, path)
                save_png(f"{stem}.png", labels * 255 if binary else labels)
                if not binary:
                    save_png(f"{stem}_color.png", color_mask(labels, predictor.palette))
                if overlays:
                    save_png(f"{stem}_overlay.png", overlay(img, labels, predictor.palette))
                if probs:
                    fg = p[0] if binary else p
                    if binary:
                        save_png(f"{stem}_prob.png", (fg.cpu().numpy() * 255).round().astype(np.uint8))
                    else:
                        np.save(f"{stem}_probs.npy", p.cpu().numpy().astype(np.float16))
                written += 1
        bar.update(len(files[start:start + batch_size]))
    bar.close()
    return {"written": written, "failed": failed, "out": str(out_dir)}

