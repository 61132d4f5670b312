"""Deep supervision: a loss on side outputs of the decoder, as in PraNet, Polyp-PVT and nnU-Net.

`DeepSupervision` attaches 1x1 convolution heads to decoder stages of a U-Net (the classic one or
the timm one) through forward hooks. The heads live in this object, not in the model: the model's
state dict, `model.safetensors`, exported ONNX/Hub files and predictions never see them, and a
model in eval mode records nothing. In training mode, after `model(x)` the side logits of the
last forward pass are in `side_logits()`, up-sampled to the input's size.

Stages are counted from the finest one that does not feed the output head itself: weight 0
goes to the stage just below the output, weight 1 to the next coarser one, and so on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def decoder_stages(model: nn.Module) -> list[tuple[nn.Module, int]]:
    """(module, output channels) of each decoder stage below the output, finest first."""
    from unetkit.models.unet import TimmUNet, UNet

    if isinstance(model, UNet):
        blocks = [up.conv for up in model.ups][:-1]  # the last one feeds the head
    elif isinstance(model, TimmUNet):
        blocks = [block["conv"] for block in model.ups]  # final_conv feeds the head
    else:
        raise TypeError(f"train.deep_supervision needs a unetkit U-Net, not {type(model).__name__}")
    # Each block is a double_conv: its last BatchNorm states its width.
    widths = [[m for m in b.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
              for b in blocks]
    return list(zip(blocks, widths, strict=True))[::-1]


class DeepSupervision(nn.Module):
    """Side heads on `len(weights)` decoder stages of `model`, and their weighted loss."""

    def __init__(self, model: nn.Module, weights: list[float], out_channels: int):
        super().__init__()
        stages = decoder_stages(model)
        if len(weights) > len(stages):
            raise ValueError(f"train.deep_supervision has {len(weights)} weights but the model "
                             f"has {len(stages)} decoder stages below its output")
        self.weights = list(weights)
        self.heads = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for _, c in stages[:len(weights)])
        self._features: list[torch.Tensor | None] = [None] * len(weights)
        self._model = [model]  # a list: not registered as a sub-module, so never saved with us
        self._hooks = [block.register_forward_hook(self._recorder(i))
                       for i, (block, _) in enumerate(stages[:len(weights)])]

    def _recorder(self, i: int):
        def record(module, inputs, output):
            if module.training:
                self._features[i] = output
        return record

    def side_logits(self, size: tuple[int, int]) -> list[torch.Tensor]:
        """Side logits of the last training-mode forward pass, bilinearly up-sampled to `size`
        (the model's output size; a padded input is cropped back like the main output)."""
        out = []
        for head, feat in zip(self.heads, self._features, strict=True):
            if feat is None:
                raise RuntimeError("no decoder features recorded: run the model in train mode")
            logits = head(feat)
            # The stage's stride, a power of two (the input may have been padded a little).
            factor = 2 ** max(0, round(math.log2(size[-1] / feat.shape[-1])))
            full = F.interpolate(logits, scale_factor=factor, mode="bilinear", align_corners=False)
            out.append(full[..., :size[0], :size[1]])
        return out

    def loss(self, loss_fn, target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """sum_i weight_i * loss_fn(side logits i, target), then the recorded features are freed."""
        sides = self.side_logits(size)
        total = sum(w * loss_fn(lg, target) for w, lg in zip(self.weights, sides, strict=True))
        self._features = [None] * len(self.weights)
        return total

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()
