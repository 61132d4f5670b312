"""An exponential moving average of a model's weights (Polyak averaging, as timm's ModelEma).

After each optimiser step:  ema = d * ema + (1 - d) * weights,  for every floating-point
parameter and buffer (BatchNorm statistics included); integer buffers are copied. The decay
ramps up as  d = min(decay, (1 + n) / (10 + n))  after n updates, so that the average of a
short run is not dominated by its random initial weights. With `train.ema`, the averaged model
is the one validated, picked as best and saved to model.safetensors.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = float(decay), 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ours = self.module.state_dict()
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                ours[key].mul_(d).add_(value.detach(), alpha=1 - d)
            else:
                ours[key].copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
