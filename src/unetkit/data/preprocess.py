"""One preprocessing path from an image file to the network's input, for every use of a model.

    file -> decode -> resize -> scale to [0, 1] -> normalise -> (B, C, H, W) float tensor

`Preprocess` is built from a run's configuration (`Preprocess.from_config(cfg)`) and recorded in
its `config.json` (`to_dict()`); training data preparation, the training and validation batches,
`Predictor` (and so `evaluate`, `predict`, `submit`), the web page and the ONNX metadata all go
through it, so the network sees the same pixels for the same file everywhere (nnU-Net's rule).
A test feeds one file through the training path and the prediction path and compares the two
tensors bit for bit.

The decode rule, decided once:
- every file is decoded in full (no JPEG draft mode: libjpeg's reduced-scale decoding is faster
  but gives other pixels than a full decode followed by a resize, and it applied to training
  only, so a model learned on pixels it never saw at prediction), EXIF orientation applied;
- converted to RGB (transparent pixels on black) or grey, 16-bit scans to their top 8 bits;
- resized to `data.image_size` with Pillow's antialiased bilinear filter;
- scaled to [0, 1] (x / 255) and normalised with `data.mean` / `data.std`. When the
  configuration leaves them empty they are the model's default (its pretrained encoder's
  statistics, or none for the plain U-Net), resolved once at training time and stored in the
  run, so prediction never has to guess.

Augmentation happens on the training device between scaling and normalising (see `train`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetkit.io.images import read_image, resize_image

DECODE = "full decode (no JPEG draft mode), EXIF orientation applied, RGB or grey, 8 bits"
RESIZE = "Pillow bilinear, antialiased (reducing_gap 3.0)"


class Preprocess:
    """Decode, resize, scale and normalise: uint8 images in, the network's float input out."""

    def __init__(self, size: tuple[int, int] | list[int], channels: int,
                 mean: list[float] | tuple[float, ...], std: list[float] | tuple[float, ...]):
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"data.mean and data.std need one value per input channel "
                             f"({channels}); got {list(mean)} and {list(std)}")
        self.size = (int(size[0]), int(size[1]))  # (height, width)
        self.channels = int(channels)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._stats: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_config(cls, cfg) -> Preprocess:
        """The preprocessing of a run. Its normalisation must be resolved (see
        `resolve_normalisation`), as every saved run's is."""
        d = cfg.data
        if d.mean is None or d.std is None:
            raise ValueError("data.mean/std are not resolved yet; call "
                             "preprocess.resolve_normalisation(cfg, model) first")
        return cls(d.image_size, cfg.model.in_channels, d.mean, d.std)

    def to_dict(self) -> dict[str, Any]:
        """What config.json and the ONNX metadata record about the input."""
        return {"decode": DECODE, "resize": RESIZE, "image_size": list(self.size),
                "channels": self.channels, "scale": "x / 255", "mean": list(self.mean),
                "std": list(self.std)}

    # -- files to uint8 arrays (host) --------------------------------------------------------

    def decode(self, path: str | Path) -> np.ndarray:
        """A file as an (H, W, C) uint8 array at its own size; `ImageError` names a bad file."""
        return read_image(path, self.channels)

    def resize(self, image: np.ndarray) -> np.ndarray:
        """An (H, W, C) uint8 image at the network's size."""
        return resize_image(image, self.size)

    def load(self, path: str | Path) -> np.ndarray:
        """decode + resize: the uint8 array training stores for a file."""
        return self.resize(self.decode(path))

    # -- uint8 tensors to the network's input (any device) ---------------------------------

    def to_unit(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, C) -> float (B, C, H, W) in [0, 1]."""
        return batch.permute(0, 3, 1, 2).float().div_(255)

    def normalise(self, unit: torch.Tensor) -> torch.Tensor:
        """[0, 1] (B, C, H, W) -> (x - mean) / std."""
        key = (unit.device, unit.dtype)
        if key not in self._stats:  # once per device: no host-to-device copy per step
            self._stats[key] = tuple(torch.tensor(v, device=unit.device, dtype=unit.dtype)
                                     .view(1, -1, 1, 1) for v in (self.mean, self.std))
        mean, std = self._stats[key]
        return (unit - mean) / std

    def __call__(self, images: np.ndarray | torch.Tensor,
                 device: str | torch.device = "cpu") -> torch.Tensor:
        """uint8 (B, H, W, C) images (already at the size wanted) -> the network's input."""
        if isinstance(images, np.ndarray):
            # A read-only array (a memory-mapped cache) is copied: torch cannot share it.
            images = torch.from_numpy(np.require(images, requirements=["C", "W"]))
        return self.normalise(self.to_unit(images.to(device)))


def resolve_normalisation(cfg, model) -> None:
    """Fill empty data.mean/std with the model's default normalisation (`default_normalisation`
    of the model interface). Stored in the run, so prediction normalises exactly as training."""
    if cfg.data.mean is not None:
        return
    c = cfg.model.in_channels
    default = getattr(model, "default_normalisation", None)
    if default is None:
        raise ValueError(f"a {type(model).__name__} states no default input normalisation; "
                         "give data.mean and data.std")
    mean, std = default()
    if len(mean) != c:  # a grey input on an RGB encoder: average the statistics
        mean, std = [sum(mean) / len(mean)] * c, [sum(std) / len(std)] * c
    cfg.data.mean, cfg.data.std = [float(m) for m in mean], [float(s) for s in std]
