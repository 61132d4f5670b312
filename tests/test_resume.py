"""A run killed with SIGKILL mid-epoch and resumed ends with exactly the weights of a run that
was never interrupted (deterministic mode, CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import SRC, run_cli
from unetkit.synthetic import write_dataset

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
    return dict(os.environ, PYTHONPATH=str(SRC))


def train_args(data, out) -> list[str]:
    config = out.parent / "tiny.yaml"
    config.write_text(TINY)
    return ["train", "--config", str(config), "--data", str(data), "--out", str(out), "--quiet"]


def checkpoint_epoch(run) -> int:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the same reduction order in every process
    data = write_dataset(tmp_path / "data", count=40, size=32)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_cli(*train_args(data, whole), cwd=tmp_path)

    proc = subprocess.Popen([sys.executable, "-m", "unetkit", *train_args(data, killed)],
                            cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "last.pt").exists():  # epoch 1 is saved...
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    time.sleep(0.4)  # ...and epoch 2 is under way (an epoch takes about a second here)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_after = checkpoint_epoch(killed)
    assert stopped_after < 4, "the run finished before it was killed: nothing was tested"

    out = run_cli("train", "--resume", str(killed), "--quiet", cwd=tmp_path)
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
    assert rows == [line.split(",")[:5] for line in (killed / "metrics.csv").read_text().splitlines()]
