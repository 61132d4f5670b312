"""The moving average of the weights (timm's ModelEmaV3)."""

from __future__ import annotations

import copy

import torch

from unetkit import config as config_mod
from unetkit.models.unet import build_model
from unetkit.training.ema import EMA


def by_hand(ours: dict, model: torch.nn.Module, updates: int, decay: float) -> None:
    """The formula of ema.py's docstring, tensor by tensor."""
    d = min(decay, (1 + updates) / (10 + updates))
    for key, value in model.state_dict().items():
        if value.dtype.is_floating_point:
            ours[key].mul_(d).add_(value, alpha=1 - d)
        else:
            ours[key].copy_(value)


def tiny_unet(*overrides: str) -> torch.nn.Module:
    return build_model(config_mod.load(overrides=["model.base_channels=4", "model.depth=2",
                                                  *overrides]))


def test_ema_gives_the_formula_on_a_unet_with_batchnorm():
    torch.manual_seed(0)
    model = tiny_unet()
    ema = EMA(model, decay=0.6)
    reference = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(15):
        model.train()
        model(torch.randn(2, 3, 16, 16)).square().mean().backward()  # moves BatchNorm stats too
        opt.step()
        opt.zero_grad()
        ema.update(model)
        by_hand(reference, model, step, 0.6)
    assert ema.updates == 15 and ema.current_decay() == 0.6  # the ramp reached it
    got = ema.module.state_dict()
    for key, value in reference.items():
        assert torch.allclose(got[key].double(), value.double(), atol=1e-6, rtol=0), key
    assert not any(p.requires_grad for p in ema.module.parameters())
    again = EMA(model, decay=0.6)  # a resumed run continues the same average
    again.load_state_dict(ema.state_dict())
    assert again.updates == 15 and again.current_decay() == ema.current_decay()
