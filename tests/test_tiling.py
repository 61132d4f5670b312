"""Sliding-window inference agrees with whole-image inference."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unetkit import config as config_mod
from unetkit.inference.predictor import Predictor
from unetkit.inference.tiling import gaussian_weights, sliding_window, tile_starts
from unetkit.models.unet import UNet


def test_tiles_cover_the_image_with_the_requested_overlap():
    for length, tile in ((100, 32), (64, 64), (20, 32), (1918, 480)):
        starts = tile_starts(length, tile, 0.5)
        assert starts[0] == 0 and starts[-1] + min(tile, length) == length
        steps = np.diff(starts)
        assert (steps <= tile // 2).all() and (steps > 0).all()
    w = gaussian_weights((32, 48))
    assert w.shape == (32, 48) and w.max() == 1 and w.min() > 0
    assert w[16, 24] > w[0, 0]


def test_pointwise_model_is_identical_tiled_and_whole():
    """A 1x1-conv model has no spatial context, so any blending must reproduce it exactly:
    this checks the weight normalisation and the tile placement."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 2, 1)).eval()
    x = torch.randn(1, 3, 75, 130)
    tiled = sliding_window(model, x, (32, 48), overlap=0.5, batch_size=3)
    assert torch.allclose(tiled, model(x), atol=1e-5)


def test_unet_tiled_matches_whole_image_up_to_blending():
    """A U-Net sees zero padding at tile borders, so tiles differ from the whole image there;
    the Gaussian weights keep those borders' share small. Where one tile covers the image, the
    two are the same computation."""
    torch.manual_seed(0)
    cfg = config_mod.load(overrides=["data.image_size=[64, 64]", "model.base_channels=8",
                                     "model.depth=2"])
    cfg.data.mean, cfg.data.std = [0.5] * 3, [0.25] * 3
    model = UNet(3, 1, 8, 2).eval()
    # A smooth image, as photos are: random noise would make every border effect maximal.
    yy, xx = np.mgrid[0:150, 0:200]
    img = np.stack([128 + 100 * np.sin(xx / 17.0), 128 + 100 * np.cos(yy / 23.0),
                    128 + 60 * np.sin((xx + yy) / 31.0)], -1).astype(np.uint8)
    whole = Predictor(model, cfg).preprocess(img[None])
    with torch.no_grad():
        reference = torch.sigmoid(model(whole))[0]
    tiled = Predictor(model, cfg, tile=True).probabilities([img])[0]
    assert tiled.shape == (1, 150, 200)
    diff = (tiled - reference).abs()
    assert diff.mean() < 0.01 and diff.max() < 0.15, (diff.mean(), diff.max())
    assert ((tiled > 0.5) == (reference > 0.5)).float().mean() > 0.98
    small = img[:64, :60]  # fits in one tile: exactly the whole-image result
    one = Predictor(model, cfg, tile=True).probabilities([small])[0]
    with torch.no_grad():
        whole_small = Predictor(model, cfg).preprocess(small[None])
        assert torch.allclose(one, torch.sigmoid(model(whole_small))[0],
                              atol=1e-6)
