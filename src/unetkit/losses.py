"""Segmentation losses: (B)CE + soft Dice, for binary (one logit) and multi-class (K logits) models.

Targets are (B, H, W) integer class maps in both cases; `ignore_index` pixels count nowhere.
Soft Dice is computed per class over the whole batch (sums over batch and pixels), then averaged
over classes:  dice_k = (2 * sum(p * g) + s) / (sum(p) + sum(g) + s)  with smoothing s = 1,
or with sum(p^2) + sum(g^2) below the line when `squared` (the NeoPolyp report's form).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .structure import structure_loss

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


class SegmentationLoss(nn.Module):
    """weight_ce * (BCE or CE) + weight_dice * soft Dice (+ structure * the structure loss),
    from a `LossConfig`."""

    def __init__(self, loss_cfg, num_classes: int):
        super().__init__()
        self.cfg, self.num_classes = loss_cfg, num_classes
        weights = loss_cfg.class_weights
        if weights is not None and len(weights) != num_classes:
            raise ValueError(f"train.loss.class_weights has {len(weights)} values for "
                             f"{num_classes} classes")
        self.register_buffer("class_weights", torch.tensor(weights, dtype=torch.float32)
                             if weights is not None else None, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg, logits, target = self.cfg, logits.float(), target.long()
        valid = None
        if cfg.ignore_index is not None:
            valid = (target != cfg.ignore_index).unsqueeze(1).float()
            target = target.masked_fill(target == cfg.ignore_index, 0)
        if logits.shape[1] == 1:  # binary: one logit, sigmoid
            onehot = target.unsqueeze(1).float()
            pos_weight = None  # class_weights [background, foreground] -> their ratio
            if self.class_weights is not None:
                pos_weight = self.class_weights[1] / self.class_weights[0]
            ce = F.binary_cross_entropy_with_logits(logits, onehot, pos_weight=pos_weight,
                                                    reduction="none")
            ce = ce.mean() if valid is None else (ce * valid).sum() / valid.sum().clamp_min(1)
            dice_probs, dice_target = torch.sigmoid(logits), onehot
            include_bg = True  # a single channel is the foreground
        else:
            ce = F.cross_entropy(logits, target if valid is None else
                                 target.masked_fill(valid[:, 0] == 0, -100),
                                 weight=self.class_weights, ignore_index=-100)
            dice_probs = logits.softmax(1)
            dice_target = F.one_hot(target, self.num_classes).permute(0, 3, 1, 2).float()
            include_bg = cfg.dice_include_background
        loss = cfg.bce * ce
        if cfg.structure:
            loss = loss + cfg.structure * structure_loss(logits, target, cfg.structure_kernel,
                                                         valid=valid)
        if cfg.dice:
            loss = loss + cfg.dice * soft_dice_loss(dice_probs, dice_target, valid,
                                                    cfg.squared_dice, include_bg)
        return loss
