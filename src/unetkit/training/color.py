"""Colour augmentations aimed at the shift between hospitals (other endoscopes, light sources
and white balances), as batch operations in `augment`'s style (registered there as ops):

    - {op: color_jitter, p: 0.8, hue: 0.05, saturation: 0.3, contrast: 0.3}
    - {op: color_transfer, p: 0.5, space: lab}

`color_jitter` rotates the hue (by up to `hue` of the colour circle), scales the saturation and
the contrast (by factors in 1 +- the limit). Hue and saturation act on the chroma plane of YIQ,
a linear transform of RGB, so they cost one 3x3 matrix per image; contrast scales about each
image's mean grey level (torchvision's definition).

`color_transfer` gives an image the colour statistics of another image of the same batch
(Reinhard et al. 2001): per channel, its mean and standard deviation in CIE L*a*b* (or RGB)
are replaced by the other image's. The partner is the image `r` places further on in the batch,
r drawn per batch in 1..B-1, so it is never the image itself.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from unetkit.training.augment_base import chosen, on_device, uniform

# RGB -> YIQ (NTSC); the inverse is computed once.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_RGB = torch.linalg.inv(_YIQ)
# Linear sRGB -> CIE XYZ (D65), and the D65 white point.
_XYZ = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                     [0.019334, 0.119193, 0.950227]])
_WHITE = torch.tensor([0.950456, 1.0, 1.088754])


def color_jitter(img, mask, gen, p=0.5, hue=0.05, saturation=0.3, contrast=0.3):
    n = img.shape[0]
    sel = chosen(gen, n, p)
    angle = uniform(gen, n, -hue, hue) * 2 * math.pi * sel
    sat = 1 + uniform(gen, n, -saturation, saturation) * sel
    con = 1 + uniform(gen, n, -contrast, contrast) * sel
    cos, sin = torch.cos(angle) * sat, torch.sin(angle) * sat
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, cos, -sin, sin, cos
    matrix = on_device(_RGB @ rot @ _YIQ, img, img.dtype)  # (n, 3, 3): RGB -> RGB
    out = torch.einsum("nij,njhw->nihw", matrix, img[:, :3])
    grey = torch.einsum("j,njhw->nhw", on_device(_YIQ[0], img, img.dtype), out).mean((1, 2))
    con = on_device(con, img, img.dtype)[:, None, None, None]
    out = (out - grey[:, None, None, None]) * con + grey[:, None, None, None]
    return torch.cat([out, img[:, 3:]], 1).clamp(0, 1), mask


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], (B, 3, H, W) -> CIE L*a*b* (L in [0, 100])."""
    lin = torch.where(rgb > 0.04045, ((rgb.clamp_min(0) + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = torch.einsum("ij,njhw->nihw", _XYZ.to(rgb), lin) / _WHITE.to(rgb).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-6) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]),
                        200 * (f[:, 1] - f[:, 2])], 1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """The inverse of `rgb_to_lab`, clamped to [0, 1]."""
    fy = (lab[:, 0] + 16) / 116
    f = torch.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], 1)
    white = _WHITE.to(lab).view(1, 3, 1, 1)
    xyz = torch.where(f > 0.206893, f ** 3, (f - 16 / 116) / 7.787) * white
    lin = torch.einsum("ij,njhw->nihw", torch.linalg.inv(_XYZ).to(lab), xyz).clamp(0, 1)
    gamma = 1.055 * lin.clamp_min(1e-8) ** (1 / 2.4) - 0.055
    rgb = torch.where(lin > 0.0031308, gamma, 12.92 * lin)
    return rgb.clamp(0, 1)


def match_statistics(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per image and channel, `source` with the mean and standard deviation of `reference`."""
    mu_s, sd_s = source.mean((2, 3), keepdim=True), source.std((2, 3), keepdim=True)
    mu_r, sd_r = reference.mean((2, 3), keepdim=True), reference.std((2, 3), keepdim=True)
    return (source - mu_s) / sd_s.clamp_min(1e-3) * sd_r + mu_r


def color_transfer(img, mask, gen, p=0.5, space: Literal["lab", "rgb"] = "lab"):
    if space not in ("lab", "rgb"):
        raise TypeError(f"space must be 'lab' or 'rgb', got {space!r}")
    n = img.shape[0]
    sel = chosen(gen, n, p)
    if n < 2 or img.shape[1] < 3:
        return img, mask
    shift = int(torch.randint(1, n, (1,), generator=gen))
    rgb = img[:, :3]
    if space == "lab":
        lab = rgb_to_lab(rgb)
        moved = lab_to_rgb(match_statistics(lab, lab.roll(shift, 0)))
    else:
        moved = match_statistics(rgb, rgb.roll(shift, 0)).clamp(0, 1)
    out = torch.where(on_device(sel, img)[:, None, None, None], moved, rgb)
    return torch.cat([out, img[:, 3:]], 1), mask


COLOR_OPS = {f.__name__: f for f in (color_jitter, color_transfer)}
