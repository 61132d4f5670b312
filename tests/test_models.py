"""The classic U-Net: shapes at any input size, the paper's parameter count, the options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetkit import UNet, build_model
from unetkit import config as config_mod


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def classic() -> UNet:
    return UNet(3, 1)


def test_classic_unet_parameter_count(classic):
    # The binary write-up's U-Net (64-128-256-512, 1024 bottleneck, transposed convs, 3 -> 1):
    # 31.04 M parameters. Pinned exactly, so any change to the architecture is noticed.
    assert n_params(classic) == 31_037_633


def test_classic_unet_structure(classic):
    model = classic
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    widths = sorted({c.out_channels for c in convs})
    assert widths == [1, 64, 128, 256, 512, 1024]
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(u.in_channels, u.out_channels, u.kernel_size, u.stride) for u in ups] == [
        (1024, 512, (2, 2), (2, 2)), (512, 256, (2, 2), (2, 2)),
        (256, 128, (2, 2), (2, 2)), (128, 64, (2, 2), (2, 2))]
    assert isinstance(model.head, nn.Conv2d) and model.head.kernel_size == (1, 1)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("bilinear", [False, True])
def test_output_shape_any_size(depth, bilinear):
    model = UNet(3, 2, base_channels=4, depth=depth, bilinear=bilinear).eval()
    for size in [(67, 101), (17, 23), (32, 32), (3, 2), (1, 1)]:  # odd, tiny, and a multiple
        with torch.no_grad():
            out = model(torch.randn(2, 3, *size))
        assert out.shape == (2, 2, *size)
        assert torch.isfinite(out).all()


def test_padding_does_not_leak_into_the_output():
    """The output of an odd-sized input is the crop of the padded input's output."""
    torch.manual_seed(0)
    model = UNet(3, 1, base_channels=4, depth=2).eval()
    x = torch.randn(1, 3, 17, 23)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 3), mode="replicate")  # to 20 x 24
    with torch.no_grad():
        assert torch.allclose(model(x), model(padded)[..., :17, :23], atol=1e-6)


def test_reduction_head_and_grey_input():
    # The 3-class write-up's head: Conv(64 -> 32) + BN + ReLU, then the 1x1 conv to the classes.
    model = UNet(in_channels=1, num_classes=3, head_channels=32).eval()  # base width 64
    head = list(model.head)
    assert isinstance(head[0], nn.Conv2d)
    assert (head[0].in_channels, head[0].out_channels) == (64, 32)
    assert isinstance(head[1], nn.BatchNorm2d) and isinstance(head[2], nn.ReLU)
    assert isinstance(head[3], nn.Conv2d) and head[3].kernel_size == (1, 1)
    assert (head[3].in_channels, head[3].out_channels) == (32, 3)
    assert model.inc[0].in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(1, 1, 19, 21)).shape == (1, 3, 19, 21)
    # The head adds its own parameters on top of the plain U-Net.
    plain = UNet(in_channels=1, num_classes=3)
    extra = 64 * 32 * 9 + 2 * 32 + 32 * 3 + 3 - (64 * 3 + 3)
    assert n_params(model) - n_params(plain) == extra


def test_bilinear_is_lighter(classic):
    bilinear = UNet(3, 1, bilinear=True)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in bilinear.modules())
    assert n_params(bilinear) < n_params(classic)


def test_build_model_follows_the_config():
    cfg = config_mod.load(overrides=["model.base_channels=8", "model.depth=2",
                                     "model.head_channels=4", "model.in_channels=1"])
    model = build_model(cfg)
    assert isinstance(model, UNet) and model.multiple == 4
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 10, 13)).shape == (1, 1, 10, 13)  # binary: 1 logit
    cfg = config_mod.load(overrides=["model.base_channels=8", "data.mask_encoding=index",
                                     "data.classes=['bg','a','b']"])
    assert build_model(cfg).head.out_channels == 3  # multi-class: one logit per class


def test_model_trains_a_step():
    """Gradients reach every parameter (nothing is accidentally detached or unused)."""
    model = UNet(3, 1, base_channels=4, depth=2, head_channels=4)
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
