"""Multi-scale training: each batch is resized by a factor drawn from a list (PraNet and
Polyp-PVT use 0.75, 1 and 1.25 at 352x352), to the nearest multiple of the model's stride so
every decoder stage lines up with its skip connection. Images are resized bilinearly, masks by
nearest neighbour (class indices stay class indices, `ignore_index` pixels stay ignored)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scaled_size(size: tuple[int, int], factor: float, multiple: int) -> tuple[int, int]:
    """(H, W) * factor, rounded to the nearest multiple of `multiple` (at least one multiple)."""
    return tuple(max(multiple, round(s * factor / multiple) * multiple) for s in size)


def rescale_batch(images: torch.Tensor, masks: torch.Tensor, size: tuple[int, int]):
    """images (B, C, H, W) float, masks (B, H, W) integer -> both at `size`."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images, masks
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    masks = F.interpolate(masks[:, None].float(), size=size, mode="nearest")[:, 0].to(masks.dtype)
    return images, masks


class MultiScale:
    """`train.multiscale` as a callable on batches; draws from its own seeded generator."""

    def __init__(self, factors: list[float], multiple: int, seed: int = 0):
        self.factors, self.multiple = list(factors), int(multiple)
        self.generator = torch.Generator().manual_seed(seed)

    def __bool__(self) -> bool:
        return bool(self.factors)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor):
        i = int(torch.randint(len(self.factors), (1,), generator=self.generator))
        size = scaled_size(tuple(images.shape[-2:]), self.factors[i], self.multiple)
        return rescale_batch(images, masks, size)
