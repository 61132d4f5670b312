"""unetkit: train, evaluate and deploy U-Net segmentation models."""

__version__ = "0.1.0"

from .loading import load_model  # noqa: E402
from .models import TimmUNet, UNet, build_model  # noqa: E402
from .predict import Predictor  # noqa: E402

__all__ = ["UNet", "TimmUNet", "build_model", "load_model", "Predictor", "__version__"]
