"""Segmentation losses: a weighted sum of named terms ((B)CE, soft Dice; see `TERMS`), for binary
(one logit) and multi-class (K logits) models.

Targets are (B, H, W) integer class maps in both cases; `ignore_index` pixels count nowhere.
Soft Dice is computed per class over the whole batch (sums over batch and pixels), then averaged
over classes:  dice_k = (2 * sum(p * g) + s) / (sum(p) + sum(g) + s)  with smoothing s = 1,
or with sum(p^2) + sum(g^2) below the line when `squared` (the NeoPolyp report's form).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.training.structure import structure_loss

SMOOTH = 1.0


def soft_dice_loss(probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor | None = None,
                   squared: bool = False, include_background: bool = True) -> torch.Tensor:
    """1 - mean soft Dice over classes. probs, onehot: (B, K, H, W); valid: (B, 1, H, W) or None."""
    if valid is not None:
        probs, onehot = probs * valid, onehot * valid
    if not include_background and probs.shape[1] > 1:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    if squared:
        denom = (probs * probs).sum(dims) + (onehot * onehot).sum(dims)
    else:
        denom = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + SMOOTH) / (denom + SMOOTH)).mean()


@dataclass
class Batch:
    """What every loss term receives: float logits (B, K, H, W), class targets (B, H, W) with
    ignored pixels set to 0, `valid` (B, 1, H, W) float or None, and the targets one-hot in the
    logits' layout (one channel, the foreground, for a binary model)."""
    logits: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor | None
    onehot: torch.Tensor
    class_weights: torch.Tensor | None

    @property
    def binary(self) -> bool:
        return self.logits.shape[1] == 1


def cross_entropy(b: Batch, cfg) -> torch.Tensor:
    """BCE for one logit (class_weights [background, foreground] become BCE's pos_weight, their
    ratio), cross-entropy for K logits; a mean over valid pixels."""
    if b.binary:
        pos_weight = None if b.class_weights is None else b.class_weights[1] / b.class_weights[0]
        ce = F.binary_cross_entropy_with_logits(b.logits, b.onehot, pos_weight=pos_weight,
                                                reduction="none")
        return ce.mean() if b.valid is None else (ce * b.valid).sum() / b.valid.sum().clamp_min(1)
    target = b.target if b.valid is None else b.target.masked_fill(b.valid[:, 0] == 0, -100)
    return F.cross_entropy(b.logits, target, weight=b.class_weights, ignore_index=-100)


def dice(b: Batch, cfg) -> torch.Tensor:
    """Soft Dice on probabilities (sigmoid or softmax); a single binary channel is the
    foreground, so `dice_include_background` applies to multi-class models only."""
    probs = torch.sigmoid(b.logits) if b.binary else b.logits.softmax(1)
    include_bg = True if b.binary else cfg.dice_include_background
    return soft_dice_loss(probs, b.onehot, b.valid, cfg.squared_dice, include_bg)


def structure(b: Batch, cfg) -> torch.Tensor:
    """PraNet's boundary-weighted BCE + IoU (see structure.py), binary or per class."""
    return structure_loss(b.logits, b.target, cfg.structure_kernel, valid=b.valid)


# The loss is sum(weight * term): each name is a term function and the `train.loss` field that
# holds its weight. A new loss is one function above, one line here and its weight field in
# config.LossConfig; terms of weight 0 are not computed.
TERMS: dict[str, Callable[[Batch, Any], torch.Tensor]] = {
    "bce": cross_entropy,  # BCE (binary) or cross-entropy (multi-class)
    "dice": dice,
    "structure": structure,  # boundary-weighted BCE + IoU (PraNet's structure loss)
}


class SegmentationLoss(nn.Module):
    """sum over `TERMS` of weight * term, from a `LossConfig`; `ignore_index` (the data's,
    `data.ignore_index`) marks target pixels that count nowhere."""

    def __init__(self, loss_cfg, num_classes: int, ignore_index: int | None = None):
        super().__init__()
        self.cfg, self.num_classes, self.ignore_index = loss_cfg, num_classes, ignore_index
        weights = loss_cfg.class_weights
        if weights is not None and len(weights) != num_classes:
            raise ValueError(f"train.loss.class_weights has {len(weights)} values for "
                             f"{num_classes} classes")
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32)
                             if weights is not None else None, persistent=False)
        self.terms = [(name, fn, float(getattr(loss_cfg, name))) for name, fn in TERMS.items()
                      if getattr(loss_cfg, name)]
        if not self.terms:
            raise ValueError(f"train.loss: every term's weight is 0; give one of "
                             f"{', '.join(TERMS)} a positive weight")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float(), target.long()
        valid = None
        if self.ignore_index is not None:
            valid = (target != self.ignore_index).unsqueeze(1).float()
            target = target.masked_fill(target == self.ignore_index, 0)
        if logits.shape[1] == 1:
            onehot = target.unsqueeze(1).float()
        else:
            onehot = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).float()
        batch = Batch(logits, target, valid, onehot, self.class_weights)
        loss = None
        for _, term, weight in self.terms:
            value = weight * term(batch, self.cfg)
            loss = value if loss is None else loss + value
        return loss
