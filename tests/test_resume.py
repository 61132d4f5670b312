"""A run killed with SIGKILL mid-epoch and resumed ends with exactly the weights of a run that
was never interrupted (deterministic mode, CPU)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import process_env, run_cli
from unetkit.data.synthetic import write_dataset

# Augmentation and a warm-up + cosine schedule on, so every saved generator and scheduler state
# matters: resuming with any of them wrong changes the weights.
TINY = """
model: {base_channels: 4, depth: 2}
data: {image_size: [32, 32], split: {val_fraction: 0.25}}
train:
  epochs: 4
  batch_size: 2
  lr: 0.01
  warmup_epochs: 0.5
  device: cpu
  deterministic: true
  samples: 0
  augment: [{op: hflip}, {op: rot90}, {op: affine}]
"""


def env() -> dict:
    return process_env()


def train_args(data, out) -> list[str]:
    config = out.parent / "tiny.yaml"
    config.write_text(TINY)
    return ["train", "--config", str(config), "--data", str(data), "--out", str(out), "--quiet"]


# The child kills itself with SIGKILL right after a given optimiser step (torch's global hook
# after every optimizer.step()), so the kill lands at a point the test chooses on any machine.
KILL_AFTER_STEP = """
import os, signal, sys
from torch.optim.optimizer import register_optimizer_step_post_hook
from unetkit.cli.main import main
steps, kill_at = [0], int(sys.argv[1])
def count(optimizer, args, kwargs):
    steps[0] += 1
    if steps[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
register_optimizer_step_post_hook(count)
main(sys.argv[2:])
"""
STEPS_PER_EPOCH = 15  # 40 images, a quarter for validation, batches of 2


def checkpoint_epoch(run) -> int:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same reduction order in every process
    data = write_dataset(tmp_path / "data", count=40, size=32)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_cli(*train_args(data, whole), cwd=tmp_path, process=True)

    # Killed in the middle of epoch 2, once epoch 1's checkpoint is on disk.
    kill_at = STEPS_PER_EPOCH + STEPS_PER_EPOCH // 2
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_STEP, str(kill_at),
                           *train_args(data, killed)], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    stopped_after = checkpoint_epoch(killed)
    assert stopped_after == 1, "the kill did not land in epoch 2"
    rows_before = (killed / "metrics.csv").read_text().splitlines()
    assert len(rows_before) == 2  # the header and epoch 1

    out = run_cli("train", "--resume", str(killed), "--quiet", cwd=tmp_path, process=True)
    assert f"after epoch {stopped_after}" in out.stdout

    # Bit-identical: same data order, augmentation draws, schedule and optimiser moments.
    for name in ("model.safetensors",):  # the best weights
        a, b = load_file(str(whole / name)), load_file(str(killed / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resuming"
    a, b = torch.load(whole / "checkpoints" / "last.pt", weights_only=True), \
        torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 4 and a["best"] == b["best"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    rows = [line.split(",")[:5] for line in (whole / "metrics.csv").read_text().splitlines()]
    killed_rows = (killed / "metrics.csv").read_text().splitlines()
    assert rows == [line.split(",")[:5] for line in killed_rows]
