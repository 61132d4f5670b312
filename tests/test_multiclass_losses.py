"""Losses: known values, a NumPy reference written from the formulas, and
segmentation-models-pytorch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unetkit.config.schema import LossConfig
from unetkit.training.losses import SegmentationLoss

SMOOTH = 1.0
# smp 0.6 computes Dice as (I + s) / (I + (fp + fn) / 2 + s) = (2I + 2s) / (P + G + 2s): its
# smooth s = 0.5 is our (2I + 1) / (P + G + 1).
SMP_SMOOTH = SMOOTH / 2


def np_softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_reference(logits, target, ce_w=1.0, dice_w=1.0, squared=False, class_weights=None,
                 ignore=None, include_background=True):
    """The loss written out from its definition, pixel by pixel, in float64 NumPy."""
    logits, target = logits.astype(np.float64), target.astype(np.int64)
    b, k, h, w = logits.shape
    probs = np_softmax(logits)
    valid = np.ones_like(target, bool) if ignore is None else target != ignore
    cw = np.ones(k) if class_weights is None else np.asarray(class_weights, np.float64)
    num = den = 0.0
    inter, psum, gsum = np.zeros(k), np.zeros(k), np.zeros(k)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                if not valid[i, y, x]:
                    continue
                t = target[i, y, x]
                num += -cw[t] * math.log(probs[i, t, y, x])
                den += cw[t]
                for c in range(k):
                    p, g = probs[i, c, y, x], float(c == t)
                    inter[c] += p * g
                    psum[c] += p * p if squared else p
                    gsum[c] += g * g if squared else g
    dice = (2 * inter + SMOOTH) / (psum + gsum + SMOOTH)
    if not include_background:
        dice = dice[1:]
    return ce_w * num / den + dice_w * (1 - dice.mean())


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, generator=gen) * 2
    target = torch.randint(0, 3, (2, 5, 6), generator=gen)
    return logits, target


def test_known_values_for_a_perfect_and_a_uniform_prediction():
    target = torch.tensor([[[0, 1], [2, 2]]])
    perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    loss = SegmentationLoss(LossConfig(bce=1.0, dice=1.0), 3)
    assert loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # Uniform logits: CE = ln 3; class c with n_c pixels: Dice = (2 n_c/3 + 1) / (4/3 + n_c + 1).
    uniform = torch.zeros(1, 3, 2, 2)
    counts = np.array([1, 1, 2])
    dice = (2 * counts / 3 + 1) / (4 / 3 + counts + 1)
    expected = 0.5 * math.log(3) + 0.5 * (1 - dice.mean())
    half = SegmentationLoss(LossConfig(bce=0.5, dice=0.5), 3)
    assert half(uniform, target).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("options", [
    {},
    {"squared": True},
    {"class_weights": [0.2, 1.0, 3.0]},
    {"ignore": 255},
    {"include_background": False, "squared": True},
])
def test_matches_the_reference_formula(batch, options):
    logits, target = batch
    if "ignore" in options:
        target = target.clone()
        target[0, :2] = 255
    cfg = LossConfig(bce=0.7, dice=1.3, squared_dice=options.get("squared", False),
                     class_weights=options.get("class_weights"),
                     dice_include_background=options.get("include_background", True))
    ours = SegmentationLoss(cfg, 3, options.get("ignore"))(logits, target).item()
    ref = np_reference(logits.numpy(), target.numpy(), 0.7, 1.3, options.get("squared", False),
                       options.get("class_weights"), options.get("ignore"),
                       options.get("include_background", True))
    assert ours == pytest.approx(ref, rel=1e-5)


def test_dice_matches_segmentation_models_pytorch(batch):
    smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")
    logits, target = batch
    assert set(target.unique().tolist()) == {0, 1, 2}  # smp drops classes absent from the target
    ours = SegmentationLoss(LossConfig(bce=0.0, dice=1.0), 3)(logits, target).item()
    smp_dice = smp_losses.DiceLoss("multiclass", from_logits=True, smooth=SMP_SMOOTH)
    theirs = smp_dice(logits, target).item()
    assert ours == pytest.approx(theirs, rel=1e-5)
    ignored = target.clone()
    ignored[1] = 255
    ours = SegmentationLoss(LossConfig(bce=0.0, dice=1.0), 3, 255)(logits, ignored).item()
    theirs = smp_losses.DiceLoss("multiclass", from_logits=True, smooth=SMP_SMOOTH,
                                 ignore_index=255)(logits, ignored).item()
    assert ours == pytest.approx(theirs, rel=1e-5)


def test_binary_is_one_logit_through_the_same_loss():
    smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 6, 6, generator=gen)
    target = torch.randint(0, 2, (2, 6, 6), generator=gen)
    dice = SegmentationLoss(LossConfig(bce=0.0, dice=1.0), 2)(logits, target).item()
    smp_dice = smp_losses.DiceLoss("binary", from_logits=True, smooth=SMP_SMOOTH)
    theirs = smp_dice(logits, target[:, None]).item()
    assert dice == pytest.approx(theirs, rel=1e-5)
    bce = SegmentationLoss(LossConfig(bce=1.0, dice=0.0), 2)(logits, target).item()
    p = torch.sigmoid(logits[:, 0]).double().numpy()
    t = target.numpy()
    assert bce == pytest.approx(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(), rel=1e-5)


def test_class_weight_count_is_checked():
    with pytest.raises(ValueError, match="class_weights has 2 values for 3 classes"):
        SegmentationLoss(LossConfig(class_weights=[1.0, 2.0]), 3)
