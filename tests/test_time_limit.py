"""`train.time_limit`: the run ends within its time, annealed, resumable, shared over folds."""

from __future__ import annotations

import pytest
import torch

from unetkit import config as config_mod
from unetkit.runs.folder import read_metrics_csv
from unetkit.training import trainer as trainer_mod
from unetkit.training.budget import Horizon
from unetkit.training.fit import fit
from unetkit.training.folds import train_folds
from unetkit.training.optim import make_scheduler

TINY = ["model.base_channels=4", "model.depth=2", "data.image_size=[32,32]", "train.device=cpu",
        "train.samples=0", "train.batch_size=8", "train.lr=1e-2", "train.min_lr=1e-4",
        "train.schedule=cosine", "train.warmup_epochs=1"]


def tiny(data, *overrides):
    return config_mod.load("demo", data_root=str(data), overrides=[*TINY, *overrides])


def test_durations_are_read_as_seconds_and_nonsense_is_one_line():
    for text, seconds in (("45m", 2700), ("1.5h", 5400), ("2h30m", 9000), ("90s", 90),
                          ("90", 90), (120, 120)):
        assert config_mod.load("demo", overrides=[f"train.time_limit={text}"]
                               ).train.time_limit == seconds
    for bad in ("soon", "-5", "0"):
        with pytest.raises(config_mod.ConfigError, match="train.time_limit") as caught:
            config_mod.validate(config_mod.load("demo", overrides=[f"train.time_limit={bad}"]))
        assert "\n" not in str(caught.value)


def test_the_plan_follows_measured_epoch_times():
    h = Horizon(20, limit=100.0)
    h.update(1, 10.0)  # 10 s an epoch: 9 more fit in the 90 s left
    assert h.epochs == 10
    h.update(2, 30.0)  # slower: 20 s an epoch on average, 60 s left, 3 more
    assert h.epochs == 5
    h.update(5, 70.0)  # way over: the plan (5) ended the schedule here, so the run ends
    assert h.epochs == 5
    quick = Horizon(3, limit=1e6)
    quick.update(1, 1.0)
    assert quick.epochs == 3  # never more than train.epochs
    late = Horizon(20, limit=5.0)
    late.update(1, 10.0)  # the first epoch already ran past the limit: one more anneals
    assert late.epochs == 2
    assert Horizon(7).epochs == 7 and Horizon(7).stretch(2) == 2  # no limit: the configured run


def test_the_schedule_is_restretched_to_end_at_the_planned_epoch():
    cfg = config_mod.load("demo", overrides=["train.lr=1.0", "train.min_lr=0.01",
                                             "train.epochs=10", "train.warmup_epochs=2"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    horizon = Horizon(10, limit=60.0)
    sched = make_scheduler(cfg, opt, steps_per_epoch=4, horizon=horizon)
    lrs = []
    for _ in range(4):  # epoch 1 of the configured 10: warm-up over 8 steps
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[-1] == pytest.approx(5 / 8)
    horizon.update(1, 20.0)  # 20 s an epoch: 2 more fit; warm-up stretched to 0.6 epochs
    assert horizon.epochs == 3
    for _ in range(8):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)  # the floor, at the planned end


def test_a_tiny_limit_ends_annealed_one_epoch_past_it_at_most(synthetic_data, tmp_path):
    cfg = tiny(synthetic_data, "train.epochs=50", "train.time_limit=0.001")
    fit(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    rows = read_metrics_csv(tmp_path / "run" / "metrics.csv")
    # The first epoch is over the limit; one more ends the schedule; not one after it.
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["planned_epochs"] == 2
    assert rows[-1]["lr"] == pytest.approx(1e-4)  # train.min_lr: annealed
    saved = config_mod.read_yaml(tmp_path / "run" / "config.yaml")
    assert saved["train"]["time_limit"] == pytest.approx(0.001)


def test_a_generous_limit_changes_nothing(synthetic_data, tmp_path):
    cfg = tiny(synthetic_data, "train.epochs=2", "train.time_limit=10h")
    fit(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    rows = read_metrics_csv(tmp_path / "run" / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["planned_epochs"] == 2
    assert rows[-1]["lr"] == pytest.approx(1e-4)


def test_a_resumed_run_keeps_its_plan_and_the_time_it_used(synthetic_data, tmp_path,
                                                             monkeypatch):
    cfg = tiny(synthetic_data, "train.epochs=50", "train.time_limit=0.001")
    save = trainer_mod.Trainer.save

    def killed_after_first_checkpoint(self, scores):
        save(self, scores)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod.Trainer, "save", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    monkeypatch.setattr(trainer_mod.Trainer, "save", save)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["horizon"]["epochs"] == 2 and state["horizon"]["used"] > 0
    fit(cfg, tmp_path / "run", resume=True, progress=False, log=lambda *a: None)
    rows = read_metrics_csv(tmp_path / "run" / "metrics.csv")
    # Without the plan kept, the resumed run would start a 50-epoch schedule again.
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["lr"] == pytest.approx(1e-4)


def test_folds_share_the_limit(synthetic_data, tmp_path):
    cfg = tiny(synthetic_data, "train.epochs=3", "train.time_limit=1h")
    train_folds(cfg, tmp_path / "folds", k=2, progress=False, log=lambda *a: None)
    for i in (1, 2):
        saved = config_mod.read_yaml(tmp_path / "folds" / f"fold-{i}" / "config.yaml")
        assert saved["train"]["time_limit"] == pytest.approx(1800)
