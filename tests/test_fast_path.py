"""The Trainer's fast path (batches gathered from device tensors, device augmentation, one step
function, torch.compile with its eager fallback, bf16 + channels_last on CUDA) trains exactly as
a plain, straightforward loop does on the same seed.

Tolerances, and why:
- CPU, eager: the two paths run the same float32 operations in the same order, so losses agree
  to 1e-5 relative and validation scores to 1e-4 (no pixel may change class).
- CPU, torch.compile (AOTAutograd graphs, run by the eager backend so no C++ compiler is needed):
  decomposed BatchNorm sums in another order, and Adam amplifies those 1e-7 differences a little
  over the steps: losses 1e-3 relative, scores 1e-2 (a few pixels at the threshold).
- CUDA, bf16 autocast + channels_last against the float32 loop: bf16 keeps 8 bits of mantissa,
  so losses 5e-2 relative and mDice 5e-2 after two short epochs.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import unetkit
from unetkit import config as config_mod
from unetkit.evaluation.metrics import SegmentationMetrics, logits_to_labels
from unetkit.models.unet import build_model
from unetkit.training.losses import SegmentationLoss
from unetkit.training.trainer import Trainer


def small_cfg(data, **overrides):
    sets = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in {
        "model.base_channels": 8, "model.depth": 2, "data.image_size": [64, 64],
        "data.split.val_fraction": 0.25, "train.epochs": 2, "train.batch_size": 8,
        "train.lr": 3e-3, "train.schedule": "constant", "train.eval_batch_size": 16,
        "train.samples": 0, **overrides}.items()]
    return config_mod.load(overrides=sets, data_root=str(data))


def plain_loop(trainer: Trainer, init_state: dict) -> tuple[list[float], dict]:
    """The loop a tutorial would write: numpy batches, float32, one image at a time to validate."""
    cfg = trainer.cfg
    model = build_model(cfg)
    model.load_state_dict(init_state)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr,
                            weight_decay=cfg.train.weight_decay)
    loss_fn = SegmentationLoss(cfg.train.loss, cfg.num_classes)
    mean = torch.tensor(cfg.data.mean).view(1, -1, 1, 1)
    std = torch.tensor(cfg.data.std).view(1, -1, 1, 1)

    def inputs(images):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        return (x - mean) / std

    order = torch.Generator().manual_seed(cfg.train.seed + 2)  # the Trainer's sample order
    data, bs, losses = trainer.train_data, trainer.batch_size, []
    for _ in range(cfg.train.epochs):
        model.train()
        perm, total = torch.randperm(len(data), generator=order).numpy(), 0.0
        steps = len(data) // bs
        for step in range(steps):
            idx = perm[step * bs:(step + 1) * bs]
            masks = torch.from_numpy(data.masks[idx]).long()
            loss = loss_fn(model(inputs(data.images[idx])), masks)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / steps)
    model.eval()
    metrics = SegmentationMetrics(cfg.num_classes, cfg.data.classes)
    with torch.no_grad():
        for i in range(len(trainer.val_data)):
            logits = model(inputs(trainer.val_data.images[i:i + 1]))
            metrics.update(logits_to_labels(logits, cfg.train.threshold),
                           torch.from_numpy(trainer.val_data.masks[i:i + 1]).long())
    return losses, metrics.compute()


def fast_path(trainer: Trainer) -> tuple[list[float], dict]:
    losses = []
    for _ in range(trainer.cfg.train.epochs):
        losses.append(trainer.train_epoch())
        trainer.epoch += 1
    return losses, trainer.validate()[0]


def compare(fast, plain, loss_rtol, score_atol):
    (fast_losses, fast_scores), (plain_losses, plain_scores) = fast, plain
    assert fast_losses == pytest.approx(plain_losses, rel=loss_rtol)
    for key in ("mDice_point", "mIoU_point", "dice", "iou", "precision", "recall"):
        assert fast_scores[key] == pytest.approx(plain_scores[key], abs=score_atol), key
    # the comparison means something only if training moved the loss
    assert fast_losses[-1] < fast_losses[0]


def make_trainer(data, tmp_path, **overrides):
    trainer = Trainer(small_cfg(data, **overrides), tmp_path, progress=False, log=lambda m: None)
    return trainer, copy.deepcopy(trainer.model.state_dict())


def test_trainer_matches_plain_loop_on_cpu(synthetic_data, tmp_path):
    trainer, init = make_trainer(synthetic_data, tmp_path, **{"train.device": "cpu"})
    compare(fast_path(trainer), plain_loop(trainer, init), loss_rtol=1e-5, score_atol=1e-4)


def aot_eager_compile(monkeypatch):
    """torch.compile through Dynamo and AOTAutograd, kernels run eagerly (no C++ compiler)."""
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: real(model, backend="aot_eager"))


@pytest.mark.slow  # tracing forward and backward takes 20-90 s on two busy cores
def test_compiled_trainer_matches_plain_loop(synthetic_data, tmp_path, monkeypatch):
    aot_eager_compile(monkeypatch)
    notes = []
    trainer = Trainer(small_cfg(synthetic_data, **{"train.device": "cpu", "train.compile": True}),
                      tmp_path, progress=False, log=notes.append)
    init = copy.deepcopy(trainer.model.state_dict())
    assert trainer.step.compiled  # really compiled
    fast = fast_path(trainer)
    assert trainer.step.compiled and not notes  # and it stayed compiled
    compare(fast, plain_loop(trainer, init), loss_rtol=1e-3, score_atol=1e-2)


class FailsAtForward(nn.Module):
    """Stands in for a compiled model whose compiler fails at the first call."""

    def __init__(self, model):
        super().__init__()
        self._orig_mod = model

    def forward(self, x):
        raise RuntimeError("BackendCompilerFailed: simulated failure\nsecond line")


class _RaiseInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("simulated failure compiling the backward graph")


class FailsAtBackward(FailsAtForward):
    """Runs the real forward (so BatchNorm statistics move), then fails in backward."""

    def forward(self, x):
        return _RaiseInBackward.apply(self._orig_mod(x))


@pytest.mark.parametrize("broken", [FailsAtForward, FailsAtBackward])
def test_compile_failure_falls_back_to_eager_exactly(synthetic_data, tmp_path, monkeypatch, broken):
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: broken(model))
    notes = []
    trainer = Trainer(small_cfg(synthetic_data, **{"train.device": "cpu", "train.compile": True}),
                      tmp_path, progress=False, log=notes.append)
    init = copy.deepcopy(trainer.model.state_dict())
    fast = fast_path(trainer)
    assert not trainer.step.compiled
    assert len(notes) == 1 and "torch.compile failed at the first training step" in notes[0]
    assert "simulated failure" in notes[0] and "\n" not in notes[0]
    # Buffers were restored and gradients cleared: the run is the eager run, to the last bit.
    compare(fast, plain_loop(trainer, init), loss_rtol=1e-5, score_atol=1e-4)


def test_a_real_error_still_surfaces(synthetic_data, tmp_path, monkeypatch):
    """The fallback retries eagerly; an error that is not the compiler's is raised from there."""
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: FailsAtForward(model))
    trainer, _ = make_trainer(synthetic_data, tmp_path, **{"train.device": "cpu",
                                                           "train.compile": True})
    trainer.loss_fn = lambda logits, masks: (_ for _ in ()).throw(ValueError("bad masks"))
    with pytest.raises(ValueError, match="bad masks"):
        trainer.train_epoch()


def test_no_host_sync_per_step_without_progress(synthetic_data, tmp_path, monkeypatch):
    """Without progress bars unetkit's only read of a device value is the epoch's mean loss.
    (Reads inside torch itself, like the CPU AdamW's step counters, are not unetkit's; on CUDA the
    fused AdamW keeps them on the device.)"""
    trainer, _ = make_trainer(synthetic_data, tmp_path, **{"train.device": "cpu",
                                                           "train.batch_size": 4})
    assert trainer.steps_per_epoch >= 8
    calls = []
    real_item = torch.Tensor.item
    package = Path(unetkit.__file__).resolve().parent  # unetkit's own source files, wherever

    def item(self):
        caller = sys._getframe(1).f_code
        if Path(caller.co_filename).resolve().is_relative_to(package):
            calls.append(caller.co_name)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    trainer.train_epoch()
    assert calls == ["train_epoch"]


def test_compile_mode_is_checked(synthetic_data):
    with pytest.raises(config_mod.ConfigError, match="compile_mode"):
        small_cfg(synthetic_data, **{"train.compile_mode": "fastest"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bf16 + channels_last path)")
def test_cuda_bf16_path_matches_float32_loop(synthetic_data, tmp_path):
    trainer, init = make_trainer(synthetic_data, tmp_path, **{"train.device": "cuda"})
    fast = fast_path(trainer)
    init = {k: v.cpu() for k, v in init.items()}
    compare(fast, plain_loop(trainer, init), loss_rtol=5e-2, score_atol=5e-2)
