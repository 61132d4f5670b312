"""`torchrun --nproc_per_node 2` (gloo, CPU) trains like one process with the same global batch,
and resumes the same way."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import process_env, run_cli
from unetkit.data.synthetic import write_dataset

# Equal by construction, up to float rounding: BCE only (a mean over pixels, so the mean of two
# half-batch losses is the loss of the whole batch; soft Dice sums over the batch, so its value
# on two halves differs), BatchNorm statistics of the global batch (train.sync_batchnorm), no
# augmentation, a constant learning rate (so a 2-epoch run resumed to 3 epochs has the schedule
# of a 3-epoch run). What is left is the order of floating-point sums (gradients summed over
# 2 x 2 images instead of 4, BatchNorm sums over ranks): ~1e-7 relative per step.
# SGD, not Adam: Adam divides each gradient by its own size, so a parameter whose gradient is
# near zero moves by about lr either way and rounding decides which (measured here: AdamW runs
# differ by 4e-4 in the first epoch's loss, SGD runs at lr 0.01 by ~1e-6 per step). With SGD the
# tolerances below hold over 12 steps and are tighter than the faults they guard against: each
# rank training on half its share moved the first epoch's val loss by 1.4%.
TINY = """
model: {base_channels: 4, depth: 2}
data: {image_size: [32, 32], split: {val_fraction: 0.2}}
train:
  epochs: 3
  batch_size: 4
  optimizer: sgd
  lr: 0.01
  schedule: constant
  device: cpu
  deterministic: true
  samples: 0
  sync_batchnorm: true
  loss: {dice: 0.0}
"""
LOSS_RTOL, METRIC_ATOL, WEIGHT_ATOL = 2e-4, 2e-3, 1e-3


def torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    env = process_env(OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "unetkit", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def rows(run) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = write_dataset(tmp_path / "data", count=20, size=32)  # 16 train (4 steps), 4 val
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    one, two = tmp_path / "one", tmp_path / "two"
    run_cli("train", "--config", str(config), "--data", str(data), "--out", str(one), "--quiet",
            cwd=tmp_path, process=True)
    first = torchrun("train", "--config", str(config), "--data", str(data), "--out", str(two),
                     "--set", "train.epochs=2", "--quiet", cwd=tmp_path)
    assert first.stdout.count(" on 16 images, validating on 4") == 1  # rank 0 alone logs
    assert "2 processes, 2 images each per step (global batch 4)" in first.stdout
    resumed = torchrun("train", "--resume", str(two), "--set", "train.epochs=3", "--quiet",
                       cwd=tmp_path)
    assert "resuming" in resumed.stdout and "after epoch 2" in resumed.stdout

    a, b = rows(one), rows(two)
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == ["1", "2", "3"]
    for ra, rb in zip(a, b, strict=False):
        for key in ("train_loss", "val_loss"):
            assert float(rb[key]) == pytest.approx(float(ra[key]), rel=LOSS_RTOL), (key, ra, rb)
        for key in ("val_mDice_point", "val_mIoU_point", "val_dice", "val_iou"):
            assert float(rb[key]) == pytest.approx(float(ra[key]), abs=METRIC_ATOL), (key, ra, rb)
    first, last = float(a[0]["train_loss"]), float(a[-1]["train_loss"])
    assert first != pytest.approx(last, rel=1e-2)  # it trains

    wa, wb = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert wa.keys() == wb.keys()  # GlobalBatchNorm2d keeps BatchNorm2d's names: loads anywhere
    worst = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    assert worst < WEIGHT_ATOL, worst
    state = torch.load(two / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 3
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["last.pt"]  # finished
