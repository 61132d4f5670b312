"""Rebuilding a trained model from a run folder (or a Hub folder or id) alone.

Apart from `runs` (the run folder's files) so that `models` and `runs` do not import each
other: `runs` knows files, `models` knows networks, and this module joins the two.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .models import build_model
from .runs import load_weights, resolve_model_dir, run_config


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained model from a run folder (or a Hub-style folder) alone, in eval mode.

    The returned model carries its configuration as `model.unetkit_config`.
    """
    run_dir = resolve_model_dir(run_dir)
    cfg = run_config(run_dir)
    cfg.model.encoder_weights = None  # the trained weights below replace any pretrained ones
    model = build_model(cfg)
    load_weights(model, run_dir / "model.safetensors")
    model.unetkit_config = cfg
    return model.to(device).eval()
