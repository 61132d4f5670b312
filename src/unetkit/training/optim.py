"""Optimisers and learning-rate schedules, each a registry of the names a config may give.

`OPTIMIZERS` and `SCHEDULES` are the allowed values of `train.optimizer` and `train.schedule`
(config validation reads them from here). Warm-up + cosine / linear / constant are per-step
factors of a LambdaLR; "plateau" is ReduceLROnPlateau on the monitored validation score, stepped
once per epoch (`steps_per_batch` tells the loop which).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from unetkit.config.names import SCHEDULES
from unetkit.training.budget import Horizon

# name -> (parameters, train config, {"fused": True} on CUDA) -> optimiser
OPTIMIZERS: dict[str, Callable] = {
    "adamw": lambda p, t, fused: torch.optim.AdamW(p, lr=t.lr, weight_decay=t.weight_decay,
                                                   **fused),
    "adam": lambda p, t, fused: torch.optim.Adam(p, lr=t.lr, weight_decay=t.weight_decay, **fused),
    "sgd": lambda p, t, fused: torch.optim.SGD(p, lr=t.lr, momentum=0.9,
                                               weight_decay=t.weight_decay, nesterov=True),
}


def steps_per_batch(scheduler: torch.optim.lr_scheduler.LRScheduler) -> bool:
    """Whether `scheduler` steps after every batch (True) or once per epoch on the score."""
    return not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def make_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser `train.optimizer` names, over every parameter of `model`."""
    t = cfg.train
    params = list(model.parameters())  # frozen ones too: they get no gradient, so no update
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    if t.optimizer not in OPTIMIZERS:
        raise ValueError(f"train.optimizer must be one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[t.optimizer](params, t, fused)


def make_scheduler(cfg, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   horizon: Horizon | None = None) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step LambdaLR for warmup + cosine/linear/constant; ReduceLROnPlateau per epoch.

    The per-step schedules span `horizon.epochs` (read at every step: a time limit's revised
    plan re-stretches them, warm-up included; see `budget`), `train.epochs` without one."""
    t = cfg.train
    horizon = horizon or Horizon(t.epochs)
    if t.schedule not in SCHEDULES:
        raise ValueError(f"train.schedule must be one of {', '.join(SCHEDULES)}")
    if t.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=t.plateau_factor, patience=t.plateau_patience,
            min_lr=t.min_lr)
    floor = t.min_lr / t.lr if t.lr > 0 else 0.0

    def factor(step: int) -> float:
        total = horizon.epochs * steps_per_epoch
        warmup = int(horizon.stretch(t.warmup_epochs) * steps_per_epoch)
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if t.schedule == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        if t.schedule == "linear":
            return floor + (1 - floor) * (1 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
