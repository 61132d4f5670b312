"""Test-time augmentation: exact for symmetric models, rotations only where declared. And the
way back to the image's size: logits are resized, then turned into probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unetkit import config as config_mod
from unetkit.inference.predictor import Predictor
from unetkit.models.unet import UNet


class Symmetrised(nn.Module):
    """A model averaged over flips (and rotations): its output commutes with those transforms."""

    def __init__(self, model: nn.Module, rotations: bool):
        super().__init__()
        self.model = model
        self.views = [(f, r) for f in ((), (-1,)) for r in ((0, 1, 2, 3) if rotations else (0, 2))]

    def forward(self, x):
        out = 0
        for flip, rot in self.views:
            y = torch.rot90(x.flip(flip) if flip else x, rot, (-2, -1))
            y = torch.rot90(self.model(y), -rot, (-2, -1))
            out = out + (y.flip(flip) if flip else y)
        return out / len(self.views)


def _cfg(size, rotation_invariant):
    cfg = config_mod.load(overrides=[f"data.image_size={size}",
                                     f"data.rotation_invariant={rotation_invariant}"])
    cfg.data.mean, cfg.data.std = [0.5] * 3, [0.25] * 3
    return cfg


def _probs(model, cfg, tta):
    img = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    return Predictor(model, cfg, tta=tta).probabilities([img])[0]


def test_flip_tta_of_a_flip_symmetric_model_equals_plain():
    torch.manual_seed(0)
    model = Symmetrised(UNet(3, 1, 4, 2), rotations=False).eval()
    cfg = _cfg([32, 48], False)
    assert not Predictor(model, cfg, tta=True).rotations  # not declared, and not square
    plain, tta = _probs(model, cfg, False), _probs(model, cfg, True)
    assert torch.allclose(plain, tta, atol=1e-5), (plain - tta).abs().max()


def test_rotation_tta_of_a_fully_symmetric_model_equals_plain():
    torch.manual_seed(0)
    model = Symmetrised(UNet(3, 1, 4, 2), rotations=True).eval()
    cfg = _cfg([32, 32], True)
    predictor = Predictor(model, cfg, tta=True)
    assert predictor.rotations and len(predictor.views()) == 8
    plain, tta = _probs(model, cfg, False), _probs(model, cfg, True)
    assert torch.allclose(plain, tta, atol=1e-5), (plain - tta).abs().max()


def test_tta_changes_an_asymmetric_model_and_rotations_need_square_size():
    torch.manual_seed(0)
    model = UNet(3, 1, 4, 2).eval()
    cfg = _cfg([32, 32], True)
    assert (_probs(model, cfg, False) - _probs(model, cfg, True)).abs().max() > 1e-3
    assert not Predictor(model, _cfg([32, 48], True), tta=True).rotations


class Step(nn.Module):
    """Logits of -10 on the left half of the input and +10 on the right, whatever the pixels;
    `classes` > 1: one channel per class, the step on the last."""

    def __init__(self, classes: int = 1):
        super().__init__()
        self.classes = classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.classes, *x.shape[-2:])
        out[:, -1] = -10.0
        out[:, -1, :, x.shape[-1] // 2:] = 10.0
        return out


@pytest.mark.parametrize("classes", [1, 3])
def test_logits_are_resized_before_they_become_probabilities(classes):
    cfg = _cfg([16, 16], False)
    image = np.zeros((64, 64, 3), np.uint8)  # 4x the network's output
    probs = Predictor(Step(classes), cfg).probabilities([image])[0]
    logits = F.interpolate(Step(classes)(torch.zeros(1, 3, 16, 16)), size=(64, 64),
                           mode="bilinear", align_corners=False)
    expected = torch.sigmoid(logits) if classes == 1 else logits.softmax(1)
    assert torch.allclose(probs, expected[0], atol=1e-6)
    # The step stays a step: at most 2 pixels of a row between 0.05 and 0.95, where the
    # probabilities resized instead would ramp over 4 (0.125, 0.375, 0.625, 0.875).
    p = probs[-1]
    assert int(((p > 0.05) & (p < 0.95)).sum(-1).max()) <= 2
