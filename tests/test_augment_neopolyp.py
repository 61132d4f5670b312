"""The NeoPolyp report's augmentation, as batch ops: image and mask stay aligned, and each op's
output distribution matches albumentations' op of the same name."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from unetkit import config
from unetkit.training.augment import BatchAugment

N = 4000  # draws per comparison: standard errors of ~1-2 % of the compared quantities


def recipe_ops():
    return config.load("neopolyp-resnet34").train.augment


def test_recipe_declares_the_reports_pipeline():
    cfg = config.load("neopolyp-resnet34")
    assert cfg.data.image_size == [256, 256]
    assert cfg.data.mean == [0.485, 0.456, 0.406] and cfg.data.std == [0.229, 0.224, 0.225]
    assert cfg.train.augment == [
        {"op": "hflip", "p": 0.5}, {"op": "vflip", "p": 0.5}, {"op": "rot90", "p": 0.5},
        {"op": "gamma", "p": 0.2, "limit": [70, 120]}, {"op": "rgb_shift", "p": 0.3, "limit": 10}]


def test_image_and_mask_stay_aligned():
    gen = torch.Generator().manual_seed(0)
    masks = torch.randint(0, 3, (64, 24, 24), generator=gen)
    masks[:, :8, :5] = 1  # an asymmetric block, so every flip and turn changes the mask
    images = (masks[:, None].float() / 2).repeat(1, 3, 1, 1)  # the mask drawn as an image
    out_images, out_masks = BatchAugment(recipe_ops(), seed=1)(images, masks)
    assert not torch.equal(out_masks, masks)
    # Colour ops move grey levels by at most ~0.1 (gamma 0.7-1.2 on 0.5, shift 10/255): the
    # nearest level of 0, 0.5, 1 is still the mask's class.
    recovered = (out_images.mean(1) * 2).round().long()
    assert torch.equal(recovered, out_masks)


def _orientations(fn, n=N):
    """How often each of the 8 flips/turns of a 2x2 pattern comes out."""
    return Counter(fn() for _ in range(n))


def test_flips_and_turns_match_albumentations():
    import albumentations as A

    pattern = np.array([[0, 1], [2, 3]], np.uint8)
    # Not seeded: a seeded Compose gives its transforms the same generator, which ties the
    # flips together. So the two counts are independent draws, compared within 5 standard
    # deviations of their difference (a wrong op moves a share by far more than that).
    theirs = A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)])
    ref = _orientations(lambda: tuple(theirs(image=pattern[..., None])["image"].ravel()))
    ours_aug = BatchAugment(recipe_ops()[:3], seed=0)
    img = torch.from_numpy(pattern).float()[None, None].repeat(N, 1, 1, 1)
    masks_in = torch.from_numpy(pattern).long()[None].repeat(N, 1, 1)
    _, masks = ours_aug(img.repeat(1, 3, 1, 1), masks_in)
    ours = Counter(tuple(m.ravel().tolist()) for m in masks)
    assert set(ours) == set(ref) and len(ours) == 8
    for key in ref:
        share = ref[key] / N
        assert abs(ours[key] - ref[key]) / N < 5 * (2 * share * (1 - share) / N) ** 0.5, \
            (key, ours[key], ref[key])


@pytest.mark.parametrize("name,make", [
    ("gamma", lambda A: A.RandomGamma(gamma_limit=(70, 120), p=0.2)),
    ("rgb_shift",
     lambda A: A.RGBShift(r_shift_limit=10, g_shift_limit=10, b_shift_limit=10, p=0.3)),
])
def test_colour_ops_match_albumentations_in_distribution(name, make):
    import albumentations as A

    spec = next(s for s in recipe_ops() if s["op"] == name)
    grey = np.linspace(20, 235, 16, dtype=np.uint8)
    image = np.stack([grey, grey[::-1], np.full_like(grey, 128)], -1)[None].repeat(4, 0)  # (4,16,3)
    op = A.Compose([make(A)], seed=0)  # seeded, like ours: the same comparison on every run
    ref = np.stack([op(image=image)["image"] for _ in range(N)]).astype(np.float64)
    batch = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).repeat(N, 1, 1, 1)
    out, _ = BatchAugment([spec], seed=0)(batch, torch.zeros(N, 4, 16, dtype=torch.long))
    ours = (out.permute(0, 2, 3, 1) * 255).round().numpy()
    # Per pixel and channel: the mean and the spread of the output over the draws.
    assert np.abs(ours.mean(0) - ref.mean(0)).max() < 0.6  # grey levels (of 255)
    assert np.abs(ours.std(0) - ref.std(0)).max() < 0.6
    assert ref.std(0).mean() > 2  # the op really varies its output
    # And the share of untouched images is p.
    unchanged = (np.abs(ours - image[None]).max((1, 2, 3)) == 0).mean()
    assert unchanged == pytest.approx(1 - spec["p"], abs=0.03)
