"""Run folders made in a second, without training: a config and a (random or given) model."""

from __future__ import annotations

from pathlib import Path

import torch

from unetkit import config as config_mod
from unetkit.core.files import write_text
from unetkit.models.unet import build_model
from unetkit.runs.folder import save_weights, write_model_card


def make_run(run_dir: Path, overrides: list[str] = (), recipe: str | None = None,
             model: torch.nn.Module | None = None, seed: int = 0) -> Path:
    """A run folder as `unetkit train` leaves it (config.yaml, config.json, model.safetensors)."""
    cfg = config_mod.load(recipe, None, list(overrides))
    c = cfg.model.in_channels
    if cfg.data.mean is None:
        cfg.data.mean, cfg.data.std = [0.5] * c, [0.25] * c
    if model is None:
        torch.manual_seed(seed)
        model = build_model(cfg).eval()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", config_mod.to_yaml(cfg))
    save_weights(model, run_dir / "model.safetensors")
    write_model_card(run_dir, cfg, {"mDice_point": 0.5, "mIoU_point": 0.4})
    return run_dir
