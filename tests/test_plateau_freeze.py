"""Training schedules of the multi-class recipes: ReduceLROnPlateau and the frozen encoder."""

from __future__ import annotations

import json

import pytest
import torch

from unetkit import config
from unetkit.runs.folder import read_metrics_csv
from unetkit.training.fit import fit
from unetkit.training.trainer import Trainer


def tiny_cfg(data, **model):
    return config.from_dict({
        "model": {"base_channels": 4, "depth": 2, **model},
        "data": {"root": str(data), "classes": ["background", "lesion"], "image_size": [32, 32],
                 "split": {"val_fraction": 0.25}},
        "train": {"epochs": 7, "batch_size": 12, "optimizer": "adam", "lr": 1e-4,
                  "weight_decay": 0.0, "schedule": "plateau", "plateau_factor": 0.5,
                  "plateau_patience": 3, "min_lr": 1e-6, "device": "cpu", "samples": 0}})


def test_lr_halves_after_patience_epochs_without_improvement(synthetic_data, tmp_path, monkeypatch):
    """PyTorch's ReduceLROnPlateau: the epoch that sets the best is followed by `patience` epochs
    without improvement that are tolerated; the next one without improvement halves the lr."""
    scores = iter([0.5, 0.5, 0.5, 0.5, 0.5, 0.5])  # val mDice@point per epoch: never improves
    monkeypatch.setattr(Trainer, "validate",
                        lambda self: ({"mDice_point": next(scores), "mIoU_point": 0, "dice": 0,
                                       "iou": 0}, 0.0))
    cfg = tiny_cfg(synthetic_data)
    cfg.train.epochs = 6
    fit(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    lrs = [row["lr"] for row in read_metrics_csv(tmp_path / "run" / "metrics.csv")]
    assert lrs == pytest.approx([1e-4, 1e-4, 1e-4, 1e-4, 5e-5, 5e-5])


@pytest.mark.parametrize("monitor, best_epoch", [("mDice_point", 1), ("dice", 3)])
def test_monitor_names_the_score_that_picks_the_best_weights(synthetic_data, tmp_path, monkeypatch,
                                                            monitor, best_epoch):
    """A rare class learnt late: per-image mDice@point falls while data-set dice rises."""
    scores = iter([(0.6, 0.1), (0.5, 0.2), (0.4, 0.3)])

    def validate(self):
        m_dice, dice = next(scores)
        return {"mDice_point": m_dice, "mIoU_point": 0, "dice": dice, "iou": 0}, 0.0

    monkeypatch.setattr(Trainer, "validate", validate)
    cfg = tiny_cfg(synthetic_data)
    cfg.train.epochs, cfg.train.monitor = 3, monitor
    logged = []
    result = fit(cfg, tmp_path / "run", progress=False, log=logged.append)
    card = json.loads((tmp_path / "run" / "config.json").read_text())
    assert card["metrics"]["epoch"] == best_epoch
    assert result["best"] == {"mDice_point": 0.6, "dice": 0.3}[monitor]
    assert logged[-1].endswith(f"best val {monitor} {result['best']:.4f}")


def test_unknown_monitor_is_refused():
    with pytest.raises(config.ConfigError,
                       match="train.monitor must be one of mDice_point, mIoU_point, dice, iou"):
        config.load("neopolyp-unet3", overrides=["train.monitor=loss"])


def test_plateau_never_goes_below_min_lr():
    cfg = config.load("neopolyp-unet3")
    from unetkit.training.optim import make_scheduler

    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=cfg.train.lr)
    sched = make_scheduler(cfg, opt, 1)
    for _ in range(200):
        sched.step(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6)


def test_frozen_encoder_keeps_its_weights_then_trains(synthetic_data, tmp_path, monkeypatch):
    snapshots = []
    train_epoch = Trainer.train_epoch

    def spy(self):
        if not snapshots:
            snapshots.append(self.snapshot())
        loss = train_epoch(self)
        snapshots.append(self.snapshot())
        return loss

    def snapshot(self):
        return {name: {k: v.clone() for k, v in part.state_dict().items()}
                for name, part in (("encoder", self.model.encoder), ("decoder", self.model.ups))}

    monkeypatch.setattr(Trainer, "train_epoch", spy)
    monkeypatch.setattr(Trainer, "snapshot", snapshot, raising=False)
    cfg = tiny_cfg(synthetic_data, arch="timm-unet", encoder="resnet10t", freeze_encoder_epochs=1)
    cfg.train.epochs = 2
    fit(cfg, tmp_path / "run", progress=False, log=lambda *a: None)

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    before, frozen, after = snapshots
    # Epoch 1: the encoder's weights and BatchNorm statistics stay; the decoder learns.
    assert same(before["encoder"], frozen["encoder"])
    assert not same(before["decoder"], frozen["decoder"])
    # Epoch 2: the encoder trains too.
    changed = [k for k in frozen["encoder"]
               if not torch.equal(frozen["encoder"][k], after["encoder"][k])]
    assert any(k.endswith("weight") for k in changed)
    assert any(k.endswith("running_mean") for k in changed)
