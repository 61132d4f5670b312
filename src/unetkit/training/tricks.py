"""The training tricks a Trainer applies beside its plain step, in one object with one hook per
place in the step: multi-scale batches (multiscale.py), deep-supervision side losses
(deep_supervision.py), gradient clipping, and the moving average of the weights (ema.py).
Each is off unless its `train.*` field turns it on."""

from __future__ import annotations

import torch
from torch import nn

from unetkit.training.deep_supervision import DeepSupervision
from unetkit.training.ema import EMA
from unetkit.training.multiscale import MultiScale


class Tricks:
    def __init__(self, cfg, model: nn.Module, device: torch.device):
        t = cfg.train
        self.grad_clip = t.grad_clip
        self.multiscale = MultiScale(t.multiscale, int(getattr(model, "multiple", 1)), t.seed + 3)
        self.deep_sup = DeepSupervision(model, t.deep_supervision, cfg.out_channels).to(device) \
            if t.deep_supervision else None
        self.ema = EMA(model, t.ema) if t.ema else None

    def parameters(self) -> list[nn.Parameter]:
        """Trained beside the model's own: the side heads."""
        return list(self.deep_sup.parameters()) if self.deep_sup else []

    def batch(self, images: torch.Tensor, masks: torch.Tensor):
        return self.multiscale(images, masks) if self.multiscale else (images, masks)

    def loss(self, loss: torch.Tensor, loss_fn, logits: torch.Tensor, masks: torch.Tensor):
        """The main loss plus the side losses of the forward pass that made `logits`."""
        if self.deep_sup is None:
            return loss
        return loss + self.deep_sup.loss(loss_fn, masks, tuple(logits.shape[-2:]))

    def before_update(self, optimizer: torch.optim.Optimizer) -> None:
        if self.grad_clip:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)

    def after_update(self, model: nn.Module) -> None:
        if self.ema is not None:
            self.ema.update(model)

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The model to validate and save: the moving average when there is one."""
        return self.ema.module if self.ema is not None else model

    def generators(self) -> dict[str, torch.Generator]:
        return {"multiscale": self.multiscale.generator} if self.multiscale else {}

    def state_dict(self) -> dict:
        return {"ema": self.ema.state_dict() if self.ema else None,
                "side_heads": self.deep_sup.state_dict() if self.deep_sup else None}

    def load_state_dict(self, state: dict | None) -> None:
        state = state or {}
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        if self.deep_sup is not None and state.get("side_heads"):
            self.deep_sup.load_state_dict(state["side_heads"])
