"""Rebuilding a trained model from a run folder (or a Hub model, hf://user/name) alone.

Apart from `runs` (the run folder's files) so that `models` and `runs` do not import each
other: `runs` knows files, `models` knows networks, and this module joins the two.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from unetkit.models.unet import build_model
from unetkit.runs.check import check_weights_file, resolve_model_dir, run_config
from unetkit.runs.ensemble import EnsembleModel, ensemble_card, is_ensemble, member_dirs
from unetkit.runs.folder import load_weights


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained model from a run folder (or `hf://user/name`) alone, in eval mode.

    config.json is validated and the weights file's shapes are checked against it before
    anything is allocated (see `runcheck`). The returned model carries its configuration as
    `model.unetkit_config`.
    """
    run_dir = resolve_model_dir(run_dir)
    if is_ensemble(run_dir):  # several runs averaging their probabilities
        return load_ensemble(run_dir, device)
    cfg = run_config(run_dir)  # validated; encoder_weights cleared: nothing is downloaded
    check_weights_file(run_dir / "model.safetensors", cfg)
    model = build_model(cfg)
    load_weights(model, run_dir / "model.safetensors")
    model.unetkit_config = cfg
    return model.to(device).eval()


def load_ensemble(folder: str | Path, device="cpu") -> EnsembleModel:
    ensemble_card(folder)  # the members exist and agree on the classes
    members = [load_model(d, "cpu") for d in member_dirs(folder)]
    norms = [(m.unetkit_config.data.mean, m.unetkit_config.data.std) for m in members]
    model = EnsembleModel(members, norms)
    model.unetkit_config = members[0].unetkit_config
    return model.to(device).eval()
