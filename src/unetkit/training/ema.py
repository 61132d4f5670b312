"""An exponential moving average of a model's weights (Polyak averaging), by timm's ModelEmaV3.

After each optimiser step:  ema = d * ema + (1 - d) * weights,  for every floating-point
parameter and buffer (BatchNorm statistics included); integer buffers are copied. The decay
ramps up as  d = min(decay, (1 + n) / (10 + n))  after n updates, so that the average of a
short run is not dominated by its random initial weights. With `train.ema`, the averaged model
is the one validated, picked as best and saved to model.safetensors.
"""

from __future__ import annotations

import torch
from timm.utils import ModelEmaV3
from torch import nn


class _RampedEma(ModelEmaV3):
    """timm's update (foreach lerp over the state dict) with unetkit's ramp of the decay."""

    updates = 0

    def get_decay(self, step: int | None = None) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self._ema = _RampedEma(model, decay=float(decay))
        self.module = self._ema.module
        for p in self.module.parameters():
            p.requires_grad_(False)

    @property
    def updates(self) -> int:
        return self._ema.updates

    def current_decay(self) -> float:
        return self._ema.get_decay()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self._ema.update(model)
        self._ema.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self._ema.updates = int(state["updates"])
