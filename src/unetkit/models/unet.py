"""U-Net models: the classic U-Net of Ronneberger et al. and a U-Net on a pretrained timm encoder.

Both are plain `nn.Module`s that take a normalised (B, C, H, W) float tensor and return raw
logits (B, K, H, W): K = 1 for binary tasks (apply a sigmoid), K = classes otherwise (softmax).
Inputs of any size work: they are padded to a multiple of the network's total stride and the
output is cropped back, because users predict on images of every size.

Both implement the small interface `SegmentationModel` that training and export rely on:
`multiple` (the total stride), `default_normalisation()` (the input statistics the network
expects when the configuration gives none) and `freeze_encoder(frozen)` (the contracting path
keeps its weights and its BatchNorm statistics, also through `model.train()`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unetkit.config.names import ARCHS


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """(Conv3x3 -> BN -> ReLU) x 2, the U-Net's basic block. Biases are dropped: BN follows."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def output_head(cin: int, out_channels: int, head_channels: int) -> nn.Module:
    """1x1 conv to logits, optionally after a Conv(cin->head_channels)+BN+ReLU reduction."""
    if head_channels <= 0:
        return nn.Conv2d(cin, out_channels, 1)
    return nn.Sequential(
        nn.Conv2d(cin, head_channels, 3, padding=1, bias=False), nn.BatchNorm2d(head_channels),
        nn.ReLU(inplace=True), nn.Conv2d(head_channels, out_channels, 1),
    )


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, h, w


class Up(nn.Module):
    """Up-sample x2, concatenate the skip connection, double conv."""

    def __init__(self, cin: int, cskip: int, cout: int, bilinear: bool = False):
        super().__init__()
        if bilinear:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(cin, cin // 2, 1))
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = double_conv(cin // 2 + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class SegmentationModel:
    """The interface both U-Nets implement (a mixin before `nn.Module`)."""

    multiple: int  # inputs are padded to a multiple of this (the network's total stride)
    encoder_frozen: bool = False

    def encoder_modules(self) -> list[nn.Module]:
        """The contracting path (what `freeze_encoder` fixes)."""
        raise NotImplementedError

    def default_normalisation(self) -> tuple[list[float], list[float]]:
        """(mean, std) of the inputs the network expects when data.mean/std are not given."""
        raise NotImplementedError

    def freeze_encoder(self, frozen: bool = True) -> None:
        """Fix (or release) the encoder: no gradients, and its BatchNorm layers stay in eval
        mode, so their statistics do not drift off the pretrained ones."""
        self.encoder_frozen = frozen
        for module in self.encoder_modules():
            for p in module.parameters():
                p.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.encoder_frozen:
            for module in self.encoder_modules():
                module.eval()
        return self


class UNet(SegmentationModel, nn.Module):
    """The classic U-Net. With the defaults (depth 4, base 64) for 3 inputs and 1 output:

        (B, 3, 256, 256) -> enc 64 @256 -> 128 @128 -> 256 @64 -> 512 @32 -> bottleneck 1024 @16
        -> dec 512 @32 -> 256 @64 -> 128 @128 -> 64 @256 -> 1x1 conv -> (B, 1, 256, 256) logits

    31.04 M parameters. `depth` is the number of down-samplings (1 gives the smallest U-Net of
    one level), `base_channels` the width of the first level.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1, base_channels: int = 64,
                 depth: int = 4, bilinear: bool = False, head_channels: int = 0):
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]  # 64 128 256 512 1024
        self.in_channels = in_channels
        self.multiple = 2**depth
        self.inc = double_conv(in_channels, widths[0])
        self.downs = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], widths[i], bilinear)
                                 for i in reversed(range(depth)))
        self.head = output_head(widths[0], num_classes, head_channels)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.inc, self.downs]

    def default_normalisation(self) -> tuple[list[float], list[float]]:
        """Trained from scratch: inputs stay in [0, 1]."""
        return [0.0] * self.in_channels, [1.0] * self.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = pad_to_multiple(x, self.multiple)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        x = skips.pop()  # the bottleneck
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)[..., :h, :w]


class TimmUNet(SegmentationModel, nn.Module):
    """A U-Net whose encoder is any timm backbone (`features_only`).

    The encoder's `feature_info` gives each stage's channels and stride; the decoder climbs back
    stage by stage (transposed-conv up-sampling by the stride ratio, skip concatenation, double
    conv) and a last up-sampling returns to the input resolution.
    """

    def __init__(self, encoder: str = "resnet34", in_channels: int = 3, num_classes: int = 1,
                 head_channels: int = 0, encoder_weights: str | None = None,
                 decoder_channels: list[int] | None = None):
        super().__init__()
        import timm  # imported here so the classic U-Net needs no timm at import time

        pretrained, overlay = encoder_weights == "imagenet", None
        if pretrained:  # a local file when there is one: no network, and a one-line error
            from unetkit.models.offline_weights import imagenet_weights_file, network_error

            file = imagenet_weights_file(encoder)
            overlay = {"file": file} if file else None
        try:
            self.encoder = timm.create_model(encoder, features_only=True, in_chans=in_channels,
                                             pretrained=pretrained,
                                             pretrained_cfg_overlay=overlay)
        except (OSError, ConnectionError) as exc:  # timm's own download, where it does one
            if str(encoder).startswith("hf-hub:"):  # the architecture itself is on the Hub
                raise hub_encoder_error(encoder, exc) from None
            if not pretrained:
                raise
            raise network_error(encoder, exc) from None
        channels = self.encoder.feature_info.channels()
        strides = self.encoder.feature_info.reduction()
        self.multiple = strides[-1]
        decoder = [max(16, 256 >> i) for i in range(len(channels))]  # 256 128 64 32 16
        if decoder_channels is not None:
            if len(decoder_channels) != len(channels) or not all(
                    isinstance(c, int) and c >= 1 for c in decoder_channels):
                raise ValueError(f"model.decoder_channels: {encoder} has {len(channels)} stages, "
                                 f"so give {len(channels)} positive whole widths, coarsest first "
                                 f"(the default is {decoder}); got {decoder_channels}")
            decoder = list(decoder_channels)
        self.ups = nn.ModuleList()
        cin = channels[-1]
        for i in reversed(range(len(channels) - 1)):
            ratio = strides[i + 1] // strides[i]
            cout = decoder[len(channels) - 2 - i]
            self.ups.append(nn.ModuleDict({
                "up": nn.ConvTranspose2d(cin, cout, kernel_size=ratio, stride=ratio),
                "conv": double_conv(cout + channels[i], cout)}))
            cin = cout
        self.final_up = nn.ConvTranspose2d(cin, decoder[-1], strides[0], stride=strides[0]) \
            if strides[0] > 1 else nn.Identity()
        self.final_conv = double_conv(decoder[-1] if strides[0] > 1 else cin, decoder[-1])
        self.head = output_head(decoder[-1], num_classes, head_channels)

    def encoder_modules(self) -> list[nn.Module]:
        return [self.encoder]

    def default_normalisation(self) -> tuple[list[float], list[float]]:
        """The statistics the encoder was pretrained with, as timm states them (timm's ImageNet
        default for an encoder that states none)."""
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        cfg = self.encoder.pretrained_cfg
        mean = cfg.get("mean", IMAGENET_DEFAULT_MEAN)
        return list(mean), list(cfg.get("std", IMAGENET_DEFAULT_STD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = pad_to_multiple(x, self.multiple)
        feats = self.encoder(x)
        x = feats.pop()
        for block in self.ups:
            x = block["conv"](torch.cat([feats.pop(), block["up"](x)], dim=1))
        x = self.final_conv(self.final_up(x))
        return self.head(x)[..., :h, :w]


def hub_encoder_error(encoder: str, exc: Exception) -> Exception:
    from unetkit.config.schema import ConfigError

    why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"model.encoder={encoder}: could not be fetched from the Hugging Face Hub "
                       f"({why}); connect once (it is cached for later, offline use), or "
                       "--set model.encoder=NAME of an architecture timm builds without a "
                       "network (e.g. resnet34, efficientnet_lite0)")


def build_model(cfg) -> nn.Module:
    """The model a `Config` describes. Never downloads unless `encoder_weights: imagenet`."""
    m = cfg.model
    if m.arch not in ARCHS:
        raise ValueError(f"model.arch must be one of {', '.join(ARCHS)}; got '{m.arch}'")
    if m.arch == "unet":
        return UNet(m.in_channels, cfg.out_channels, m.base_channels, m.depth, m.bilinear,
                    m.head_channels)
    weights = m.encoder_weights
    if weights == "imagenet-local":  # the checkpoint an installed package ships (no download)
        from unetkit.models.offline_weights import local_weights_path
        weights = local_weights_path(m.encoder)
    model = TimmUNet(m.encoder, m.in_channels, cfg.out_channels, m.head_channels,
                     "imagenet" if weights == "imagenet" else None, m.decoder_channels)
    if weights and weights != "imagenet":
        load_encoder_weights(model, weights)
    return model


def load_encoder_weights(model: TimmUNet, path: str) -> None:
    """Load a local ImageNet checkpoint (safetensors or a torch state dict) into the encoder.

    Keys are matched by name: a timm checkpoint of the same model, or a packaged Lite
    checkpoint through its name mapping (`offline_weights.lite_to_timm`). Classifier weights the
    encoder does not have are ignored; any other tensor without a place, or of another shape,
    is an error.
    """
    from pathlib import Path

    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"model.encoder_weights: no file {file} (give 'imagenet' to "
                                "download through timm, or the path of a local checkpoint)")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    target = model.encoder.state_dict()
    if all(k in state and state[k].shape == v.shape for k, v in target.items()):
        model.encoder.load_state_dict({k: state[k] for k in target})
        return
    from unetkit.models.offline_weights import is_lite_checkpoint, lite_to_timm

    if not is_lite_checkpoint(state):
        missing = [k for k in target if k not in state or state[k].shape != target[k].shape]
        raise ValueError(f"{file}: no tensor '{missing[0]}' {tuple(target[missing[0]].shape)} "
                         f"(and {len(missing) - 1} more); is it a checkpoint of "
                         "model.encoder's architecture?")
    mapped = lite_to_timm(state, target, file)
    model.encoder.load_state_dict(mapped)
