"""The structure loss of PraNet / Polyp-PVT: BCE and IoU, both weighted per pixel by how close the
pixel is to a boundary of the mask, so that edges count more than the flat inside of a polyp.

    w = 1 + 5 * |avgpool_31(mask) - mask|        (zero padding, stride 1: same size as the mask)
    wBCE = sum(w * bce) / sum(w)                  per image (and class)
    wIoU = 1 - (sum(w*p*g) + 1) / (sum(w*(p+g)) - sum(w*p*g) + 1)
    loss = mean over images (and classes) of wBCE + wIoU

Binary models: logits (B, 1, H, W) or (B, H, W), targets of the same shape (or (B, H, W)) in
{0, 1}. Multi-class models: logits (B, K, H, W), targets (B, H, W) class indices; each class is a
one-hot mask with its own weights, BCE is taken on the softmax probabilities of that class and
IoU on them as well, then classes are averaged (the background included: K one-vs-rest masks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def boundary_weights(masks: torch.Tensor, kernel: int = 31, gain: float = 5.0) -> torch.Tensor:
    """1 + gain * |avgpool(masks) - masks| for float masks (B, C, H, W) in [0, 1]."""
    if kernel % 2 != 1:
        raise ValueError(f"the structure loss's kernel must be odd, got {kernel}")
    # The k x k mean as a mean over rows then over columns: the same numbers (zeros beyond the
    # edge count in both), 2k instead of k^2 additions a pixel; the k x k pool was most of the
    # loss's time on the CPU (benchmarks/profile_step.py).
    pad = kernel // 2
    pooled = F.avg_pool2d(masks, (1, kernel), stride=1, padding=(0, pad))
    pooled = F.avg_pool2d(pooled, (kernel, 1), stride=1, padding=(pad, 0))
    return 1 + gain * (pooled - masks).abs()


def structure_loss(logits: torch.Tensor, target: torch.Tensor, kernel: int = 31,
                   gain: float = 5.0, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted BCE + weighted IoU (see the module's text); pixels where `valid` (B, 1, H, W)
    is 0 count nowhere."""
    logits = logits.float()
    if logits.dim() == 3:
        logits = logits.unsqueeze(1)
    if logits.shape[1] == 1:
        onehot = target.float().reshape(logits.shape)
        weights = boundary_weights(onehot, kernel, gain)
        bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        probs = torch.sigmoid(logits)
    else:
        k = logits.shape[1]
        onehot = F.one_hot(target.long(), k).permute(0, 3, 1, 2).float()
        weights = boundary_weights(onehot, kernel, gain)
        probs = logits.softmax(1)
        logp = logits.log_softmax(1)
        # BCE of each class's probability against its one-vs-rest mask, from log-probabilities
        # (log(1 - p) as log1p(-p) stays finite while p < 1 in float32).
        bce = -(onehot * logp + (1 - onehot) * torch.log1p(-probs.clamp(max=1 - 1e-6)))
    if valid is not None:
        weights = weights * valid
    dims = (2, 3)
    wbce = (weights * bce).sum(dims) / weights.sum(dims).clamp_min(1e-6)
    inter = (weights * probs * onehot).sum(dims)
    union = (weights * (probs + onehot)).sum(dims)
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()
