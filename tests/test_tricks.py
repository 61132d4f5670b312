"""Training tricks: the structure loss, deep supervision, multi-scale batches, colour
augmentation, the moving average of the weights and gradient clipping."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from unetkit import config as config_mod
from unetkit.models.unet import build_model
from unetkit.training.augment import BatchAugment
from unetkit.training.color import color_jitter, color_transfer, lab_to_rgb, rgb_to_lab
from unetkit.training.ema import EMA
from unetkit.training.losses import SegmentationLoss
from unetkit.training.multiscale import MultiScale, scaled_size
from unetkit.training.structure import boundary_weights, structure_loss
from unetkit.training.trainer import Trainer


def one_pixel_mask():
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 1, 1] = 1
    return mask


def test_structure_weights_by_hand():
    """3x3 window, zero padding: the lone pixel sees 1/9 of itself, its 8 neighbours 1/9 of it."""
    w = boundary_weights(one_pixel_mask(), kernel=3)[0, 0]
    expected = torch.ones(4, 4)
    expected[0:3, 0:3] = 1 + 5 / 9
    expected[1, 1] = 1 + 5 * 8 / 9
    assert torch.allclose(w, expected)


def test_structure_weights_pool_rows_then_columns(monkeypatch):
    """The k x k mean is taken as a row mean then a column mean (2k additions a pixel, not k^2:
    the square pool was most of the structure loss's CPU time), with the square pool's numbers."""
    masks = (torch.rand(3, 2, 40, 37, generator=torch.Generator().manual_seed(0)) > 0.6).float()
    square = 1 + 5 * (F.avg_pool2d(masks, 15, stride=1, padding=7) - masks).abs()
    windows, pool = [], F.avg_pool2d

    def recording(x, kernel_size, *args, **kwargs):
        windows.append(kernel_size)
        return pool(x, kernel_size, *args, **kwargs)

    monkeypatch.setattr(F, "avg_pool2d", recording)
    weights = boundary_weights(masks, kernel=15)
    assert torch.allclose(weights, square, atol=1e-6)
    assert windows == [(1, 15), (15, 1)]


def test_structure_loss_by_hand():
    """Logits 0 (p = 1/2): wBCE = log 2; with sum(w) = 224/9 and w = 49/9 on the polyp pixel,
    inter = 49/18, union = 161/9, so wIoU = 1 - (49/18 + 1) / (161/9 - 49/18 + 1) = 224/291."""
    mask = one_pixel_mask()
    loss = structure_loss(torch.zeros(1, 1, 4, 4), mask, kernel=3)
    assert loss.item() == pytest.approx(math.log(2) + 224 / 291, rel=1e-6)
    # (B, H, W) logits and targets are the same thing.
    flat = structure_loss(torch.zeros(1, 4, 4), mask[:, 0], kernel=3)
    assert flat.item() == pytest.approx(loss.item())


def pranet_structure_loss(pred, mask):
    """The reference: PraNet's train.py, verbatim but for the deprecated `reduce` argument."""
    weit = 1 + 5 * torch.abs(F.avg_pool2d(mask, kernel_size=31, stride=1, padding=15) - mask)
    wbce = F.binary_cross_entropy_with_logits(pred, mask, reduction="none")
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    pred = torch.sigmoid(pred)
    inter = ((pred * mask) * weit).sum(dim=(2, 3))
    union = ((pred + mask) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def test_structure_loss_matches_pranet_and_is_hooked_into_the_loss():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 48, 40, generator=gen)
    target = (torch.rand(3, 48, 40, generator=gen) > 0.6).long()
    ours = structure_loss(logits, target)
    reference = pranet_structure_loss(logits, target[:, None].float())
    assert ours.item() == pytest.approx(reference.item())
    cfg = config_mod.from_dict({"train": {"loss": {"bce": 0.0, "dice": 0.0, "structure": 2.0}}})
    hooked = SegmentationLoss(cfg.train.loss, 2)(logits, target)
    assert hooked.item() == pytest.approx(2 * ours.item())


def test_multiclass_structure_loss():
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[:, 4:10, 4:10], target[1, 12:, 12:] = 1, 2
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 40 - 20
    wrong = perfect.roll(1, dims=1)  # every pixel gets another class
    assert structure_loss(perfect, target).item() < 1e-3
    assert structure_loss(wrong, target).item() > 10
    # Pixels outside `valid` count nowhere: a wrong prediction there costs nothing.
    valid = torch.zeros(2, 1, 16, 16)
    valid[..., :2, :2] = 1
    mixed = torch.where(valid.bool(), perfect, wrong)
    assert structure_loss(mixed, target, valid=valid).item() < 1e-3
    cfg = config_mod.from_dict({"data": {"classes": ["b", "x", "y"], "mask_encoding": "index",
                                         "ignore_index": 3}, "train": {"loss": {"structure": 1.0}}})
    masked = target.clone()
    masked[0, 0, 0] = 3
    loss_fn = SegmentationLoss(cfg.train.loss, 3, cfg.data.ignore_index)
    assert torch.isfinite(loss_fn(perfect, masked))


def small_cfg(data, *sets, arch="unet"):
    base = ["model.base_channels=8", "model.depth=2", "data.image_size=[64, 64]",
            "data.split.val_fraction=0.25", "train.epochs=1", "train.batch_size=8",
            "train.schedule='constant'", "train.samples=0", "train.device='cpu'"]
    if arch == "timm-unet":
        base += ["model.arch='timm-unet'", "model.encoder='mobilenetv3_small_050'"]
    return config_mod.load(overrides=base + list(sets), data_root=str(data))


@pytest.mark.parametrize("arch", ["unet", "timm-unet"])
def test_deep_supervision_heads_train_and_never_leave_the_run(arch, synthetic_data, tmp_path):
    cfg = small_cfg(synthetic_data, "train.deep_supervision=[0.5, 0.25]", "model.depth=3",
                    arch=arch)
    trainer = Trainer(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    heads = trainer.tricks.deep_sup.heads
    assert len(heads) == 2
    head_params = {id(p) for p in heads.parameters()}
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert head_params <= optimised
    before = [h.weight.detach().clone() for h in heads]
    trainer.fit()
    learnt = [not torch.equal(b, h.weight) for b, h in zip(before, heads, strict=True)]
    assert all(learnt)  # the heads trained
    # In training mode the side outputs exist, at the output's size; in eval mode, none.
    model = trainer.model.train()
    model(torch.randn(2, 3, 64, 64))
    sides = trainer.tricks.deep_sup.side_logits((64, 64))
    assert [s.shape for s in sides] == [(2, 1, 64, 64)] * 2
    # The saved weights are exactly a fresh model's keys: no head.
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert set(saved) == set(build_model(cfg).state_dict())
    widths = {tuple(h.weight.shape) for h in heads}
    if arch != "unet":
        return  # the ONNX check once is enough (exporting a timm encoder takes a minute here)
    from unetkit.deploy.export import export_onnx
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "model.onnx"
    export_onnx(tmp_path / "run", out)
    proto = onnx.load(str(out))
    assert len(proto.graph.output) == 1
    shapes = {tuple(t.dims) for t in proto.graph.initializer}
    assert not widths & shapes  # no side head's weights in the file


def test_multiscale_sizes_are_multiples_of_the_stride():
    assert scaled_size((352, 352), 0.75, 32) == (256, 256)  # 264 -> nearest multiple of 32
    assert scaled_size((352, 352), 1.25, 32) == (448, 448)  # 440 -> 448
    assert scaled_size((64, 96), 0.5, 32) == (32, 64)  # 32 and 48 -> 64 (ties round to even)
    scale = MultiScale([0.75, 1.0, 1.25], multiple=32, seed=0)
    images = torch.rand(4, 3, 96, 96)
    masks = torch.randint(0, 3, (4, 96, 96))
    seen = set()
    for _ in range(20):
        x, y = scale(images, masks)
        assert x.shape[:2] == (4, 3) and y.shape[0] == 4 and x.shape[-2:] == y.shape[-2:]
        assert y.dtype == masks.dtype and set(y.unique().tolist()) <= {0, 1, 2}
        seen.add(tuple(x.shape[-2:]))
    assert seen == {(64, 64), (96, 96), (128, 128)}  # 72 -> 64, 120 -> 128


def test_ema_update_by_hand():
    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    torch.nn.init.constant_(model[0].weight, 1.0)
    ema = EMA(model, decay=0.5)
    model[0].weight.data.fill_(3.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)  # decay min(0.5, 1/10) = 0.1: 0.1 * 1 + 0.9 * 3
    assert ema.module[0].weight.item() == pytest.approx(2.8)
    assert ema.module[1].num_batches_tracked.item() == 7  # integers are copied
    model[0].weight.data.fill_(5.0)
    ema.update(model)  # decay min(0.5, 2/11)
    assert ema.module[0].weight.item() == pytest.approx(2 / 11 * 2.8 + 9 / 11 * 5)
    for _ in range(20):
        ema.update(model)
    assert ema.current_decay() == 0.5  # the ramp has reached the decay


def test_ema_weights_are_validated_and_saved(synthetic_data, tmp_path):
    cfg = small_cfg(synthetic_data, "train.ema=0.9")
    trainer = Trainer(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    trainer.fit()
    assert trainer.tricks.ema.updates == trainer.steps_per_epoch
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    averaged = trainer.tricks.ema.module.state_dict()
    trained = trainer.model.state_dict()  # finish() loads the saved weights into it
    assert all(torch.equal(saved[k], averaged[k]) for k in saved)
    assert all(torch.equal(saved[k], trained[k]) for k in saved)


def test_gradient_clipping(synthetic_data, tmp_path):
    def grad_norm(*sets):
        cfg = small_cfg(synthetic_data, "train.optimizer='sgd'", *sets)
        trainer = Trainer(cfg, tmp_path / str(len(sets)), progress=False, log=lambda m: None)
        images, masks = trainer.batch(trainer.train_x, trainer.train_y, torch.arange(8), False)
        trainer.train_step(trainer.model, images, masks, 0)  # the eager step
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()

    assert grad_norm() > 0.01
    assert grad_norm("train.grad_clip=0.01") == pytest.approx(0.01, rel=1e-3)


def test_color_jitter():
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(4, 3, 8, 8) * 0.6 + 0.2
    mask = torch.randint(0, 2, (4, 8, 8))
    same, m = color_jitter(img, mask, gen, p=1.0, hue=0, saturation=0, contrast=0)
    assert torch.allclose(same, img, atol=1e-5) and m is mask
    grey = img.mean(1, keepdim=True).expand(-1, 3, -1, -1)  # no chroma: hue/saturation keep it
    out, _ = color_jitter(grey, mask, gen, p=1.0, hue=0.5, saturation=0.5, contrast=0)
    assert torch.allclose(out, grey, atol=1e-5)
    moved, _ = color_jitter(img, mask, gen, p=1.0, hue=0.1, saturation=0.3, contrast=0.3)
    assert (moved - img).abs().amax((1, 2, 3)).min() > 1e-3  # every image changed


def test_lab_conversion_and_color_transfer():
    white, red = torch.ones(1, 3, 1, 1), torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)
    assert rgb_to_lab(white).flatten().tolist() == pytest.approx([100, 0, 0], abs=0.01)
    assert rgb_to_lab(red).flatten().tolist() == pytest.approx([53.24, 80.09, 67.20], abs=0.05)
    x = torch.rand(3, 3, 16, 16)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-4)
    # RGB transfer: each image takes its partner's per-channel mean and std (values stay inside
    # [0, 1] here, so no clamping changes them).
    img = torch.rand(3, 3, 16, 16) * 0.2 + torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    img[1] = img[1] * 0.5 + 0.1
    mask = torch.zeros(3, 16, 16, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    out, _ = color_transfer(img, mask, gen, p=1.0, space="rgb")
    means = out.mean((2, 3))
    shift = next(r for r in (1, 2) if torch.allclose(means, img.roll(r, 0).mean((2, 3)), atol=1e-5))
    assert torch.allclose(out.std((2, 3)), img.roll(shift, 0).std((2, 3)), atol=1e-4)
    lab, _ = color_transfer(img, mask, torch.Generator().manual_seed(0), p=1.0, space="lab")
    assert (lab - img).abs().amax() > 0.01
    kept, _ = color_transfer(img, mask, gen, p=0.0)
    assert torch.equal(kept, img)


def test_trick_fields_are_checked():
    for bad in ("train.ema=1.5", "train.multiscale=[0.1]", "train.grad_clip=-1"):
        with pytest.raises(config_mod.ConfigError):
            config_mod.load(overrides=[bad])
    with pytest.raises(config_mod.ConfigError, match="color_transfer"):
        BatchAugment([{"op": "color_transfer", "space": "hsv"}])


@pytest.mark.parametrize("name", ["polyp-sota", "neopolyp-sota", "polyp-sota-cpu"])
def test_sota_recipes_train_a_step(name):
    """Each recipe's model, loss, side heads, scales and augmentation train (on a random
    encoder at a small size: no download, no data): every parameter, side heads included, gets a
    gradient, and a few steps of the recipe's optimiser on one batch lower its loss."""
    cfg = config_mod.load(name, overrides=["model.encoder_weights=null"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    from unetkit.training.deep_supervision import DeepSupervision

    sides = DeepSupervision(model, cfg.train.deep_supervision, cfg.out_channels)
    loss_fn = SegmentationLoss(cfg.train.loss, cfg.num_classes)
    images = torch.rand(2, 3, 64, 64)
    masks = torch.zeros(2, 64, 64, dtype=torch.long)
    for c in range(1, cfg.num_classes):  # a square of each class, something to learn
        masks[:, 8 * c:8 * c + 16, 8 * c:8 * c + 16] = c
    images, masks = BatchAugment(cfg.train.augment)(images, masks)
    images, masks = MultiScale(cfg.train.multiscale, model.multiple)(images, masks)

    def step_loss():
        logits = model(images)
        assert logits.shape[-2:] == images.shape[-2:]
        return loss_fn(logits, masks) + sides.loss(loss_fn, masks, tuple(logits.shape[-2:]))

    params = [*model.parameters(), *sides.parameters()]
    optimiser = torch.optim.AdamW(params, lr=cfg.train.lr)
    losses = []
    for _ in range(5):
        optimiser.zero_grad()
        loss = step_loss()
        loss.backward()
        if not losses:
            assert all(p.grad is not None for p in params if p.requires_grad)
            assert all(p.grad.abs().sum() > 0 for p in sides.parameters())
        optimiser.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    # it learns this batch: every step lowers the loss (one batch, no randomness between steps)
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.95 * losses[0], losses


@pytest.mark.slow
def test_resume_with_the_tricks_matches_an_uninterrupted_run(synthetic_data, tmp_path):
    """The EMA weights, side heads and multi-scale draws are in the checkpoint: one epoch,
    a new Trainer resumed from the checkpoint and a second epoch end exactly where two epochs
    in one go do."""
    sets = ["train.epochs=2", "train.ema=0.9", "train.deep_supervision=[0.5]",
            "train.multiscale=[0.5, 1.0]", "model.depth=3", "train.grad_clip=1.0"]
    quiet = {"progress": False, "log": lambda m: None}
    straight = Trainer(small_cfg(synthetic_data, *sets), tmp_path / "straight", **quiet)
    straight.fit()
    first = Trainer(small_cfg(synthetic_data, *sets), tmp_path / "resumed", **quiet)
    first.train_epoch()
    scores, _ = first.validate()
    first.epoch += 1
    first.history.append(dict(straight.history[0]))  # the row's fields (values are not used)
    first.save(scores)
    second = Trainer(small_cfg(synthetic_data, *sets), tmp_path / "resumed", **quiet)
    second.load_checkpoint(tmp_path / "resumed" / "checkpoints")
    second.fit()
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for part in ("ema", "side_heads"):
        ta, tb = a["tricks"][part], b["tricks"][part]
        ta, tb = ta.get("module", ta), tb.get("module", tb)
        assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert a["tricks"]["ema"]["updates"] == b["tricks"]["ema"]["updates"] > 0
