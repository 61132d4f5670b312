"""The networks: the classic U-Net and the U-Net on a timm encoder. Imports `core` and `config`."""

from unetkit.models.unet import TimmUNet, UNet, build_model

__all__ = ["UNet", "TimmUNet", "build_model"]
