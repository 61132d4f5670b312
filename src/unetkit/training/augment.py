"""Augmentation applied to whole batches on the training device (GPU or CPU).

A recipe declares a list of operations, each with its probability, e.g.

    augment:
      - {op: hflip, p: 0.5}
      - {op: rot90, p: 0.5}
      - {op: gamma, p: 0.2, limit: [70, 120]}
      - {op: rgb_shift, p: 0.3, limit: 10}

Each sample of a batch draws its own parameters; geometric operations move the image and its
mask together (masks with nearest-neighbour sampling), colour operations touch the image only.
Parameters are drawn from a seeded CPU generator, so a run is reproducible on any device. The
operations follow albumentations' definitions of the same names (HorizontalFlip, VerticalFlip,
RandomRotate90, RandomGamma, RGBShift, RandomBrightnessContrast, Affine); the tests compare
their output distributions.
"""

from __future__ import annotations

import inspect
import math
import typing

import torch
import torch.nn.functional as F

from unetkit.config.schema import ConfigError
from unetkit.training.augment_base import chosen, on_device, uniform
from unetkit.training.color import COLOR_OPS


def hflip(img, mask, gen, p=0.5):
    sel = on_device(chosen(gen, img.shape[0], p), img)
    return torch.where(sel[:, None, None, None], img.flip(-1), img), \
        torch.where(sel[:, None, None], mask.flip(-1), mask)


def vflip(img, mask, gen, p=0.5):
    sel = on_device(chosen(gen, img.shape[0], p), img)
    return torch.where(sel[:, None, None, None], img.flip(-2), img), \
        torch.where(sel[:, None, None], mask.flip(-2), mask)


def rot90(img, mask, gen, p=0.5):
    """Rotate by a random multiple of 90 degrees (1, 2 or 3 turns), as RandomRotate90 does
    with 0 turns included; needs square inputs (checked with the config, see `validate`)."""
    if img.shape[-1] != img.shape[-2]:
        raise ConfigError("augment op rot90 needs a square data.image_size")
    n = img.shape[0]
    sel = chosen(gen, n, p)
    turns = torch.randint(0, 4, (n,), generator=gen) * sel
    img, mask = img.clone(), mask.clone()
    for k in (1, 2, 3):
        idx = on_device((turns == k).nonzero().flatten(), img)
        if len(idx):
            img[idx] = img[idx].rot90(k, (-2, -1))
            mask[idx] = mask[idx].rot90(k, (-2, -1))
    return img, mask


def gamma(img, mask, gen, p=0.5, limit=(80, 120)):
    """img ** (g / 100), g uniform in `limit` (RandomGamma's gamma_limit)."""
    n = img.shape[0]
    g = uniform(gen, n, limit[0] / 100, limit[1] / 100)
    g = on_device(torch.where(chosen(gen, n, p), g, torch.ones(n)), img, img.dtype)
    return img.clamp_min(0) ** g[:, None, None, None], mask


def rgb_shift(img, mask, gen, p=0.5, limit=20):
    """Add a uniform shift in [-limit, limit] (of 255) to each channel (RGBShift)."""
    n, c = img.shape[:2]
    shift = uniform(gen, n * c, -limit / 255, limit / 255).reshape(n, c)
    shift = on_device(shift * chosen(gen, n, p)[:, None], img, img.dtype)
    return (img + shift[:, :, None, None]).clamp(0, 1), mask


def brightness_contrast(img, mask, gen, p=0.5, brightness=0.2, contrast=0.2):
    """img * (1 + c) + b with b, c uniform in +-limit (RandomBrightnessContrast, max-based)."""
    n = img.shape[0]
    b = uniform(gen, n, -brightness, brightness)
    c = uniform(gen, n, -contrast, contrast)
    sel = chosen(gen, n, p)
    b, c = on_device(b * sel, img, img.dtype), on_device(c * sel, img, img.dtype)
    return (img * (1 + c[:, None, None, None]) + b[:, None, None, None]).clamp(0, 1), mask


def affine(img, mask, gen, p=0.5, scale=(0.9, 1.1), rotate=(-15, 15), translate=0.0625):
    """Random scale, rotation (degrees) and translation (fraction of the side), about the centre.
    Pixels from outside the image are black (image) and background (mask).

    The rotation is one of pixel coordinates: affine_grid's coordinates run over [-1, 1] on
    both axes, so on a non-square image a rotation there would also shear; the off-diagonal
    terms are rescaled by the aspect ratio to rotate the pixels rigidly."""
    n, (h, w) = img.shape[0], img.shape[-2:]
    sel = chosen(gen, n, p)
    s = torch.where(sel, uniform(gen, n, *scale), torch.ones(n))
    a = torch.where(sel, uniform(gen, n, *rotate), torch.zeros(n)) * math.pi / 180
    t = uniform(gen, 2 * n, -translate, translate).reshape(n, 2) * sel[:, None] * 2
    cos, sin = torch.cos(a) / s, torch.sin(a) / s  # grid maps output -> input: inverse transform
    # In pixels (x, y) = (x_n * w/2, y_n * h/2): the normalised matrix is D^-1 R D, D = diag(w, h).
    theta = torch.stack([torch.stack([cos, -sin * (h / w), t[:, 0]], 1),
                         torch.stack([sin * (w / h), cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(on_device(theta, img, img.dtype), list(img.shape), align_corners=False)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = F.grid_sample(mask[:, None].to(img.dtype), grid, mode="nearest", padding_mode="zeros",
                         align_corners=False)[:, 0].round().to(mask.dtype)
    return img, mask


OPS = {f.__name__: f for f in (hflip, vflip, rot90, gamma, rgb_shift, brightness_contrast, affine)}


def all_ops() -> dict:
    """These operations and the colour ones of color.py."""
    return {**OPS, **COLOR_OPS}


def check_params(name: str, fn, params: dict) -> None:
    """Each parameter of a `train.augment` entry is one the op takes, of its default's kind:
    a number, a [low, high] pair, or a name. Read off the op's signature, so nothing runs."""
    taken = {k: v for k, v in inspect.signature(fn).parameters.items()
             if k not in ("img", "mask", "gen")}
    hints = typing.get_type_hints(fn)
    for key, value in params.items():
        if key not in taken:
            raise ConfigError(f"train.augment op '{name}': unknown parameter '{key}'; it takes "
                              f"{', '.join(taken)}")
        default, hint = taken[key].default, hints.get(key)
        if typing.get_origin(hint) is typing.Literal:  # a name from a fixed list
            ok = value in typing.get_args(hint)
            default = "one of " + ", ".join(map(repr, typing.get_args(hint)))
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, tuple):
            ok = isinstance(value, (list, tuple)) and len(value) == len(default) and all(
                _is_number(v) for v in value)
        else:
            ok = _is_number(value)
        if not ok:
            like = list(default) if isinstance(default, tuple) else default
            raise ConfigError(f"train.augment op '{name}': {key} must be like {like!r}; got "
                              f"{value!r}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# Ops that need square images (a quarter turn swaps height and width).
SQUARE_ONLY = ("rot90",)


def validate(ops: list[dict], image_size: list[int]) -> None:
    """Check `train.augment` against the config (op names, parameters, image shape) when the
    config is loaded, before any image is decoded."""
    BatchAugment(ops)
    if image_size[0] != image_size[1]:
        for spec in ops:
            if spec.get("op") in SQUARE_ONLY:
                raise ConfigError(f"train.augment op {spec['op']} turns images by 90 degrees, "
                                  f"which needs a square data.image_size (got {image_size}); "
                                  "use a square size or remove the op")


class BatchAugment:
    """The recipe's `train.augment` list as one callable: (images, masks) -> (images, masks).

    images: (B, C, H, W) float in [0, 1] before normalisation; masks: (B, H, W) integer.
    """

    def __init__(self, ops: list[dict], seed: int = 0):
        self.steps = []
        for spec in ops:
            spec = dict(spec)
            name, ops = spec.pop("op", None), all_ops()
            if name not in ops:
                raise ConfigError(f"train.augment: unknown op '{name}'; known: {', '.join(ops)}")
            check_params(name, ops[name], spec)  # now, not at the first batch
            self.steps.append((ops[name], spec))
        self.generator = torch.Generator().manual_seed(seed)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor):
        for fn, params in self.steps:
            images, masks = fn(images, masks, self.generator, **params)
        return images, masks
