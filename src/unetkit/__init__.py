"""unetkit: train, evaluate and deploy U-Net segmentation models.

    import unetkit
    predictor = unetkit.Predictor.from_run("runs/kvasir-binary")
    mask = predictor.predict("polyp.jpg")          # one image -> one (H, W) uint8 mask

The public API (see docs/python-api.md): `load_model`, `Predictor`, `Trainer`, the models
`UNet` and `TimmUNet` (plain `torch.nn.Module`s) with `build_model`, and `config` (recipes,
YAML files and `--set` overrides into a validated configuration).

The package is layered (see docs/architecture.md). Importing it imports no torch: each public
name is imported on first use (PEP 562), so `unetkit --help` and `from unetkit import config`
answer at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from unetkit.core.version import __version__

# public name -> the module that defines it
_LAZY = {
    "UNet": "unetkit.models.unet",
    "TimmUNet": "unetkit.models.unet",
    "build_model": "unetkit.models.unet",
    "load_model": "unetkit.runs.loading",
    "Predictor": "unetkit.inference.predictor",
    "Trainer": "unetkit.training.trainer",
}

__all__ = ["UNet", "TimmUNet", "build_model", "load_model", "Predictor", "Trainer", "config",
           "__version__"]

if TYPE_CHECKING:  # for type checkers and editors; at run time see __getattr__
    from unetkit import config
    from unetkit.inference.predictor import Predictor
    from unetkit.models.unet import TimmUNet, UNet, build_model
    from unetkit.runs.loading import load_model
    from unetkit.training.trainer import Trainer


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # imported once
        return value
    if name == "config":
        return importlib.import_module("unetkit.config")
    raise AttributeError(f"module 'unetkit' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
