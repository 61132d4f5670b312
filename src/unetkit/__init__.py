"""unetkit: train, evaluate and deploy U-Net segmentation models.

The package is layered (see docs/architecture.md); this file only names the public API.
"""

from unetkit.core.version import __version__
from unetkit.inference.predictor import Predictor
from unetkit.models.unet import TimmUNet, UNet, build_model
from unetkit.runs.loading import load_model
from unetkit.training.trainer import Trainer

__all__ = ["UNet", "TimmUNet", "build_model", "load_model", "Predictor", "Trainer", "__version__"]
