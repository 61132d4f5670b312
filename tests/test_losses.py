"""Losses: values worked out by hand on tiny tensors, and checked against independent code
(torch's own cross-entropy functions; the soft Dice formula written again here in numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unetkit.config.schema import LossConfig
from unetkit.training.losses import SegmentationLoss

LN2, LN3 = math.log(2), math.log(3)


def loss(logits, target, num_classes=2, ignore_index=None, **cfg) -> float:
    return SegmentationLoss(LossConfig(**cfg), num_classes, ignore_index)(logits, target).item()


def numpy_soft_dice_loss(probs: np.ndarray, target: np.ndarray, num_classes: int,
                         squared=False, include_background=True, valid=None) -> float:
    """1 - mean over classes of (2 sum(p g) + 1) / (sum(p) + sum(g) + 1), sums over the batch
    and all pixels. probs: (B, K, H, W); target: (B, H, W) class indices."""
    onehot = np.stack([(target == k) for k in range(num_classes)], 1).astype(np.float64)
    if probs.shape[1] == 1:  # binary: the foreground channel alone
        onehot = onehot[:, 1:]
    if valid is not None:
        probs, onehot = probs * valid[:, None], onehot * valid[:, None]
    if not include_background and probs.shape[1] > 1:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    scores = []
    for k in range(probs.shape[1]):
        p, g = probs[:, k].astype(np.float64), onehot[:, k]
        den = (p**2).sum() + (g**2).sum() if squared else p.sum() + g.sum()
        scores.append((2 * (p * g).sum() + 1) / (den + 1))
    return 1 - float(np.mean(scores))


# --- hand-computed values ---------------------------------------------------------------------

def test_binary_bce_plus_dice_by_hand():
    # Two pixels, logits 0 (p = 0.5), truth [1, 0]:
    #   BCE = ln 2 per pixel;  Dice = (2 * 0.5 + 1) / (1.0 + 1 + 1) = 2/3  ->  1 - 2/3 = 1/3.
    logits, target = torch.zeros(1, 1, 1, 2), torch.tensor([[[1, 0]]])
    assert loss(logits, target) == pytest.approx(LN2 + 1 / 3, abs=1e-6)
    assert loss(logits, target, dice=0.0) == pytest.approx(LN2, abs=1e-6)
    assert loss(logits, target, bce=0.0) == pytest.approx(1 / 3, abs=1e-6)
    assert loss(logits, target, bce=2.0, dice=0.5) == pytest.approx(2 * LN2 + 0.5 / 3, abs=1e-6)


def test_binary_perfect_prediction_is_near_zero():
    target = torch.tensor([[[1, 0], [0, 1]]])
    logits = (target.float() * 2 - 1)[:, None] * 30  # p = 1 on polyp, 0 elsewhere
    assert loss(logits, target) == pytest.approx(0.0, abs=1e-6)


def test_multiclass_ce_plus_dice_by_hand():
    # Three classes, two pixels, all logits 0 (p = 1/3 everywhere), truth [0, 2]:
    #   CE = ln 3;  Dice: class 0 (2/3 + 1)/(2/3 + 1 + 1) = 5/8, class 1 (0 + 1)/(2/3 + 0 + 1)
    #   = 3/5, class 2 = 5/8;  mean 37/60  ->  Dice loss 23/60.
    logits, target = torch.zeros(1, 3, 1, 2), torch.tensor([[[0, 2]]])
    assert loss(logits, target, 3) == pytest.approx(LN3 + 23 / 60, abs=1e-6)
    # Without background: mean of 3/5 and 5/8 = 49/80  ->  31/80.
    assert loss(logits, target, 3, dice_include_background=False) == \
        pytest.approx(LN3 + 31 / 80, abs=1e-6)


def test_squared_dice_by_hand():
    # p = 0.5 on two pixels, truth [1, 0]: sum p^2 = 0.5, sum g^2 = 1:
    #   (2 * 0.5 + 1) / (0.5 + 1 + 1) = 0.8  ->  0.2.
    logits, target = torch.zeros(1, 1, 1, 2), torch.tensor([[[1, 0]]])
    assert loss(logits, target, bce=0.0, squared_dice=True) == pytest.approx(0.2, abs=1e-6)
    # Multi-class, the hand case above: class 0: (2/3 + 1) / (2/9 + 1 + 1) = 15/20 = 3/4,
    # class 1: 1 / (2/9 + 1) = 9/11, class 2: 3/4.
    logits3, target3 = torch.zeros(1, 3, 1, 2), torch.tensor([[[0, 2]]])
    expected = 1 - (3 / 4 + 9 / 11 + 3 / 4) / 3
    value = loss(logits3, target3, 3, bce=0.0, squared_dice=True)
    assert value == pytest.approx(expected, abs=1e-6)


def test_ignore_index_pixels_count_nowhere():
    # The case above plus a third pixel marked 255: the result must not change, whatever the
    # model says on the ignored pixel.
    target = torch.tensor([[[1, 0, 255]]])
    for ignored_logit in (-50.0, 0.0, 50.0):
        logits = torch.tensor([0.0, 0.0, ignored_logit]).view(1, 1, 1, 3)
        assert loss(logits, target, ignore_index=255) == pytest.approx(LN2 + 1 / 3, abs=1e-6)
    target3 = torch.tensor([[[0, 2, 255]]])
    for ignored_logit in (-50.0, 50.0):
        logits = torch.zeros(1, 3, 1, 3)
        logits[0, 1, 0, 2] = ignored_logit
        assert loss(logits, target3, 3, ignore_index=255) == pytest.approx(LN3 + 23 / 60, abs=1e-6)


def test_binary_class_weights_weight_the_foreground():
    # class_weights [1, 3] -> pos_weight 3: the polyp pixel's BCE counts three times:
    # (3 ln 2 + ln 2) / 2 = 2 ln 2.
    logits, target = torch.zeros(1, 1, 1, 2), torch.tensor([[[1, 0]]])
    value = loss(logits, target, dice=0.0, class_weights=[1.0, 3.0])
    assert value == pytest.approx(2 * LN2, abs=1e-6)


def test_class_weights_length_is_checked():
    with pytest.raises(ValueError, match="class_weights has 2 values for 3 classes"):
        SegmentationLoss(LossConfig(class_weights=[1.0, 2.0]), 3)


# --- against independent implementations -------------------------------------------------------

@pytest.fixture
def random_batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 9, 11, generator=gen) * 2
    target = torch.randint(0, 4, (3, 9, 11), generator=gen)
    return logits, target


def test_multiclass_ce_matches_torch(random_batch):
    logits, target = random_batch
    weights = [0.5, 1.0, 2.0, 4.0]
    for kwargs, expected in (
        ({}, F.cross_entropy(logits, target)),
        ({"class_weights": weights}, F.cross_entropy(logits, target, weight=torch.tensor(weights))),
        ({"ignore_index": 3}, F.cross_entropy(logits, target, ignore_index=3)),
    ):
        value = loss(logits, target, 4, dice=0.0, **kwargs)
        assert value == pytest.approx(expected.item(), abs=1e-5)


def test_binary_bce_matches_torch(random_batch):
    logits, target = random_batch[0][:, :1], (random_batch[1] > 1).long()
    expected = F.binary_cross_entropy(torch.sigmoid(logits), target[:, None].float())
    assert loss(logits, target, dice=0.0) == pytest.approx(expected.item(), abs=1e-5)
    pos = F.binary_cross_entropy_with_logits(logits, target[:, None].float(),
                                             pos_weight=torch.tensor(2.5))
    value = loss(logits, target, dice=0.0, class_weights=[2.0, 5.0])
    assert value == pytest.approx(pos.item(), abs=1e-5)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("include_background", [False, True])
def test_multiclass_dice_matches_numpy(random_batch, squared, include_background):
    logits, target = random_batch
    probs = logits.softmax(1).numpy()
    expected = numpy_soft_dice_loss(probs, target.numpy(), 4, squared, include_background)
    got = loss(logits, target, 4, bce=0.0, squared_dice=squared,
               dice_include_background=include_background)
    assert got == pytest.approx(expected, abs=1e-5)


def test_binary_dice_with_ignore_matches_numpy(random_batch):
    logits, target = random_batch[0][:, :1], (random_batch[1] > 1).long()
    target[:, 0, :] = 255  # a band of ignored pixels
    valid = (target != 255).numpy().astype(np.float64)
    fg = np.where(target.numpy() == 1, 1, 0)
    expected = numpy_soft_dice_loss(torch.sigmoid(logits).numpy(), fg, 2, valid=valid)
    assert loss(logits, target, bce=0.0, ignore_index=255) == pytest.approx(expected, abs=1e-5)


def test_loss_has_gradients(random_batch):
    logits, target = random_batch
    logits = logits.clone().requires_grad_()
    SegmentationLoss(LossConfig(), 4)(logits, target).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_a_new_term_is_one_function_and_one_line(monkeypatch):
    """The loss is sum(weight * term) over losses.TERMS: a term added to the table (weight read
    from the LossConfig field of its name) is in the loss."""
    from unetkit.training import losses

    logits, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[0, 1], [1, 1]]])
    monkeypatch.setitem(losses.TERMS, "squared_dice", lambda batch, cfg: torch.tensor(5.0))
    cfg = LossConfig(dice=0.0, squared_dice=True)  # an existing bool field stands for a weight
    assert SegmentationLoss(cfg, 2)(logits, target).item() == pytest.approx(LN2 + 5.0, abs=1e-6)


def test_all_weights_zero_is_refused():
    with pytest.raises(ValueError, match="every term's weight is 0"):
        SegmentationLoss(LossConfig(bce=0.0, dice=0.0), 2)


def test_ignore_index_moved_to_the_data_settings_and_old_configs_still_load():
    from unetkit import config as config_mod

    old = config_mod.from_dict({"train": {"loss": {"ignore_index": 255, "dice": 0.5}}})
    assert old.data.ignore_index == 255 and old.train.loss.dice == 0.5
    assert config_mod.load(overrides=["train.loss.ignore_index=7"]).data.ignore_index == 7
    assert config_mod.load(overrides=["data.ignore_index=7"]).data.ignore_index == 7
    with pytest.raises(config_mod.ConfigError,
                       match="train.loss.ignore_index is now data.ignore_index"):
        config_mod.from_dict({"train": {"loss": {"ignore_index": 255}},
                             "data": {"ignore_index": 0}})
