"""What every batch augmentation op shares: per-sample random draws from the run's seeded CPU
generator, and moving the drawn parameters to the batch's device."""

from __future__ import annotations

import torch


def uniform(gen, n, low, high):
    """n values drawn uniformly from [low, high)."""
    return torch.rand(n, generator=gen) * (high - low) + low


def chosen(gen, n, p):
    """Which of n samples an op with probability p applies to."""
    return torch.rand(n, generator=gen) < p


def on_device(params: torch.Tensor, like: torch.Tensor, dtype=None) -> torch.Tensor:
    """Parameters drawn on the CPU, moved to the batch's device. To a GPU through pinned memory
    and without blocking: a plain copy would make the host wait for the GPU at every batch."""
    params = params.to(dtype) if dtype is not None else params
    if like.device.type == "cuda":
        return params.pin_memory().to(like.device, non_blocking=True)
    return params.to(like.device)
