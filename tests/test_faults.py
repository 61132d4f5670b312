"""Saving survives crashes and full disks, damaged checkpoints fall back, loading is safe, and a
NaN loss never reaches the saved weights."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import process_env
from unetkit import config as config_mod
from unetkit.core.files import write_text
from unetkit.data.synthetic import write_dataset
from unetkit.models.unet import build_model
from unetkit.runs.folder import RunError, check_state_dict, load_weights, save_weights
from unetkit.training.checkpoints import load_latest, read_checkpoint, save_checkpoint
from unetkit.training.fit import fit
from unetkit.training.losses import SegmentationLoss

TINY = ["model.base_channels=4", "model.depth=2", "data.image_size=[32,32]", "train.epochs=2",
        "train.batch_size=4", "train.lr=0.01", "train.device='cpu'", "train.deterministic=True",
        "train.samples=0", "data.split.val_fraction=0.25"]


def tiny_config(data, *changes):
    return config_mod.load(overrides=[*TINY, *changes], data_root=str(data))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("faults"), count=16, size=32)  # 12 train: 3 steps


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A two-epoch run killed after its last save, before it finished: last.pt (epoch 2) and
    previous.pt (epoch 1). (A finished run keeps last.pt alone.)"""
    out = tmp_path_factory.mktemp("run") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("unetkit.training.fit.keep_last_only", lambda folder: None)
        fit(tiny_config(data), out, progress=False, log=lambda *a: None)
    return out


# -- atomic writes --------------------------------------------------------------------------


def test_exception_between_write_and_rename_leaves_old_files(tmp_path, monkeypatch):
    model = build_model(tiny_config(tmp_path))
    write_text(tmp_path / "metrics.csv", "old")
    save_weights(model, tmp_path / "model.safetensors")
    save_checkpoint(tmp_path / "checkpoints", {"model": model.state_dict(), "epoch": 1})
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1)
    for save in (lambda: write_text(tmp_path / "metrics.csv", "new"),
                 lambda: save_weights(model, tmp_path / "model.safetensors"),
                 lambda: save_checkpoint(tmp_path / "checkpoints", {"model": {}, "epoch": 2})):
        with pytest.raises(OSError, match="power cut"):
            save()
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # same files, same bytes, and no temporary files left behind


def test_crash_between_the_two_renames_resumes_from_previous(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, {"model": {}, "epoch": 1})
    real, calls = os.replace, []

    def second_rename_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("killed")
        real(src, dst)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OSError):
        save_checkpoint(folder, {"model": {}, "epoch": 2})
    monkeypatch.undo()
    notes = []
    state, path = load_latest(folder, notes.append)
    assert (state["epoch"], path.name) == (1, "previous.pt")
    assert "last.pt: no checkpoint" in notes[0]


def test_full_disk_during_save_leaves_old_checkpoint(tmp_path):
    """A real write failure: the file-size limit (RLIMIT_FSIZE) makes the OS refuse the write
    past 64 KiB, as a full disk would (EFBIG instead of ENOSPC)."""
    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, {"model": {"w": torch.zeros(10)}, "epoch": 1})
    old = (folder / "last.pt").read_bytes()
    code = f"""
import resource, signal, torch
from unetkit.training.checkpoints import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    save_checkpoint({str(folder)!r}, {{"model": {{"w": torch.zeros(1_000_000)}}, "epoch": 2}})
except Exception as exc:
    print("failed:", type(exc).__name__, exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=process_env(), timeout=120)
    assert "failed:" in proc.stdout, proc.stdout + proc.stderr
    assert (folder / "last.pt").read_bytes() == old
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"]  # no partial file left


# -- damaged checkpoints and resume ---------------------------------------------------------


def test_truncated_checkpoint_names_the_file_and_resume_falls_back(run, data, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    last = copy / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(RunError, match=r"last\.pt: damaged or unsafe checkpoint"):
        read_checkpoint(last)

    notes = []
    cfg = tiny_config(data, "train.epochs=3")
    result = fit(cfg, copy, resume=True, progress=False, log=notes.append)
    assert any("resuming from" in n and "previous.pt" in n and "(epoch 1)" in n for n in notes)
    assert result["epochs"] == 3 and read_checkpoint(last)["epoch"] == 3

    for name in ("last.pt", "previous.pt"):
        (copy / "checkpoints" / name).write_bytes(b"garbage")
    with pytest.raises(RunError, match=r"last\.pt.*previous\.pt.*Start a new run"):
        fit(cfg, copy, resume=True, progress=False, log=notes.append)


# -- safe loading ---------------------------------------------------------------------------


class Payload:
    """Stands for an arbitrary object in a pickle: loading it would run its code."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_checkpoint_loads_weights_only_and_refuses_pickled_objects(run, tmp_path):
    state = read_checkpoint(run / "checkpoints" / "last.pt")  # weights_only=True inside
    assert state["epoch"] == 2 and set(state["rng"]) >= {"order", "augment", "torch", "numpy"}
    evil = tmp_path / "last.pt"
    torch.save({"model": {}, "epoch": 1, "extra": Payload()}, evil)
    with pytest.raises(RunError, match=r"last\.pt: damaged or unsafe"):
        read_checkpoint(evil)


def test_weights_into_another_model_say_what_differs(run, tmp_path):
    three_classes = tiny_config(tmp_path, "data.classes=['bg','a','b']",
                                "data.mask_encoding='index'")
    with pytest.raises(RunError, match=r"model\.safetensors: .*another architecture or class "
                                       r"count: 2 tensors differ in shape \(first: "
                                       r".*\(1, 4, 1, 1\) vs model \(3, 4, 1, 1\)"):
        load_weights(build_model(three_classes), run / "model.safetensors")
    deeper = build_model(tiny_config(tmp_path, "model.depth=3"))
    with pytest.raises(RunError, match=r"tensors missing \(first: .*\)"):
        load_weights(deeper, run / "model.safetensors")
    wider = build_model(tiny_config(tmp_path, "model.base_channels=8")).state_dict()
    with pytest.raises(RunError, match="differ in shape"):
        check_state_dict(build_model(tiny_config(tmp_path)), wider, "wider")
    load_weights(build_model(tiny_config(tmp_path)), run / "model.safetensors")  # the right one


# -- numerical faults -----------------------------------------------------------------------


def inject_nan(monkeypatch, at_steps):
    """The training loss becomes NaN at the given (0-based, counted over the run) steps."""
    real, seen = SegmentationLoss.forward, []

    def forward(self, logits, target):
        loss = real(self, logits, target)
        if torch.is_grad_enabled():  # training steps only, not validation
            seen.append(1)
            if len(seen) - 1 in at_steps:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(SegmentationLoss, "forward", forward)


def test_nan_loss_stops_at_once_and_keeps_best_weights(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    inject_nan(monkeypatch, at_steps={4})  # epoch 2, step 1 (3 steps per epoch)
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 1: the training loss is not "
                                                 r"finite.*train.nan_policy=skip"):
        fit(tiny_config(data, "train.epochs=3"), out, progress=False, log=lambda *a: None)
    assert read_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1
    from safetensors.torch import load_file
    weights = load_file(str(out / "model.safetensors"))
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_nan_policy_skip_skips_the_step(data, tmp_path, monkeypatch):
    out, notes = tmp_path / "run", []
    inject_nan(monkeypatch, at_steps={1, 4})
    fit(tiny_config(data, "train.nan_policy='skip'"), out, progress=False, log=notes.append)
    state = read_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert sum("skipped 1 of 3 steps" in n for n in notes) == 2
    with pytest.raises(config_mod.ConfigError, match="nan_policy"):
        tiny_config(data, "train.nan_policy='ignore'")
