"""Sliding-window inference: a large image segmented tile by tile at the training size.

Tiles of the training size step across the image with overlap; each tile's logits are weighted
by a Gaussian that is highest at the tile's centre (where the network saw the most context) and
low at its edges (where zero padding distorts it), and the weighted sum is divided by the summed
weights. Memory grows with the tile batch, not with the image: only the (K, H, W) logit sum and
weight map are kept at full size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def gaussian_weights(size: tuple[int, int], sigma_scale: float = 0.125) -> torch.Tensor:
    """(h, w) weights, a Gaussian with sigma = size * sigma_scale (nnU-Net's choice), max 1.

    The minimum is clamped above zero so that every pixel of the image gets some weight even
    where only tile edges cover it.
    """
    axes = []
    for n in size:
        coords = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        axes.append(torch.exp(-0.5 * (coords / (n * sigma_scale)) ** 2))
    w = axes[0][:, None] * axes[1][None, :]
    w = w / w.max()
    return w.clamp_min(1e-3)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering `length` with at least `overlap` overlap."""
    if length <= tile:
        return [0]
    step = max(1, int(tile * (1 - overlap)))
    n = int(np.ceil((length - tile) / step)) + 1
    # Spread the tiles evenly so that the last one ends exactly at the border.
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@torch.no_grad()
def sliding_window(logits_fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
                   tile: tuple[int, int], overlap: float = 0.5, batch_size: int = 4
                   ) -> torch.Tensor:
    """(1, K, H, W) logits of a normalised (1, C, H, W) image, from tiles of size `tile`.

    `logits_fn` maps a (B, C, h, w) batch of tiles to (B, K, h, w) logits (test-time
    augmentation included, if any). An image no larger than a tile is one tile of its own size.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
    _, _, h, w = image.shape
    th, tw = min(tile[0], h), min(tile[1], w)
    boxes = [(y, x) for y in tile_starts(h, th, overlap) for x in tile_starts(w, tw, overlap)]
    weight = gaussian_weights((th, tw)).to(image.device)
    total, norm = None, torch.zeros((h, w), device=image.device)
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start:start + batch_size]
        out = logits_fn(torch.cat([image[..., y:y + th, x:x + tw] for y, x in chunk])).float()
        if total is None:
            total = torch.zeros((out.shape[1], h, w), device=image.device)
        for (y, x), o in zip(chunk, out, strict=False):
            total[:, y:y + th, x:x + tw] += o * weight
            norm[y:y + th, x:x + tw] += weight
    return (total / norm)[None]
