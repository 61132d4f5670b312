"""How big a configured model is, counted on the model itself, never by a formula.

The model is built on PyTorch's "meta" device: every tensor has its shape and no memory, so a
configuration that asks for billions of parameters is measured in milliseconds and refused
before anything is allocated. Training checks it when it starts; loading a run folder checks
it before reading the weights (`runs.check`).
"""

from __future__ import annotations

import copy

import torch

from unetkit.config.schema import ConfigError
from unetkit.models.unet import build_model

MAX_PARAMETERS = 500_000_000  # 2 GB of float32 weights: 15x the classic U-Net (31 M)


def meta_model(cfg) -> torch.nn.Module:
    """The configured model with no memory behind its tensors (shapes only); never downloads."""
    cfg = copy.deepcopy(cfg)
    cfg.model.encoder_weights = None  # the count needs no pretrained weights
    with torch.device("meta"):
        return build_model(cfg)


def check_model_size(cfg, model: torch.nn.Module | None = None) -> int:
    """The model's parameter count, or a ConfigError when it is more than unetkit builds."""
    model = meta_model(cfg) if model is None else model
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMETERS:
        raise ConfigError(f"this model would have {n / 1e6:,.0f} M parameters "
                          f"({4 * n / 2**30:,.1f} GiB), more than unetkit builds "
                          f"({MAX_PARAMETERS / 1e6:,.0f} M); lower model.base_channels or "
                          "model.depth")
    return n


def parameter_count(model: torch.nn.Module) -> str:
    """"31,037,633 parameters", and how many of them are trained when some are frozen: the
    line `train` prints when it starts."""
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{total:,} parameters" + (f", {trained:,} trained" if trained != total else "")
