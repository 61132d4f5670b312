"""benchmarks/train_speed.py --quick runs every part it is asked for and writes sane numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO, process_env


@pytest.mark.slow  # ~30-60 s on two CPU cores: three models train a few steps each
def test_quick_benchmark_writes_results(tmp_path):
    out = tmp_path / "speed.json"
    env = process_env(OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_speed.py"), "--quick", "--device", "cpu",
         "--data", str(tmp_path / "absent"), "--skip", "timm,smp", "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == [] and result["torch"]
    rows = {r["name"]: r for r in result["rows"]}
    parts = {r["part"] for r in result["rows"]}
    assert {"decode", "writeups", "unetkit", "augment", "inference", "e2e"} <= parts
    rates = [r for r in result["rows"] if "img_s" in r]
    assert all(r["img_s"] > 0 for r in rates)
    # FLOPs from FlopCounterMode: training (forward + backward) costs about 3x inference
    train = next(r for r in rates if r["part"] == "unetkit")
    infer = next(r for r in rates if r["part"] == "inference" and "U-Net" in r["name"])
    assert 2.5 < train["gflop_per_img"] / infer["gflop_per_img"] < 3.5
    assert any(name.startswith("small U-Net fp32 b8, PIL per sample, 0 workers") for name in rows)
    assert "| part | run | img/s |" in proc.stdout


@pytest.mark.slow  # ~30-90 s on two CPU cores: three small models train a few steps each
def test_training_rows_time_the_models_they_name(tmp_path):
    """Each training row records the class of the model its steps ran and how many forward
    passes that model made: every step of the smp row runs smp's Unet (the benchmark once
    swapped smp's model in while the step still ran unetkit's)."""
    pytest.importorskip("segmentation_models_pytorch")
    out = tmp_path / "speed.json"
    env = process_env(OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_speed.py"), "--quick", "--device", "cpu",
         "--data", str(tmp_path / "absent"), "--skip", "writeups,augment,inference,e2e",
         "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["part"]: r for r in json.loads(out.read_text())["rows"] if "img_s" in r}
    expected = {"unetkit": "unetkit.models.unet.UNet", "timm": "unetkit.models.unet.TimmUNet",
                "smp": "segmentation_models_pytorch.decoders.unet.model.Unet"}
    for part, model in expected.items():
        row = rows[part]
        assert row["model"] == model, (part, row["model"])
        assert row["forward_calls"] == row["steps"] > 0, row
    assert rows["smp"]["params"] != rows["timm"]["params"]  # really another network


def test_plain_loop_ratio_is_measured_in_one_run(tmp_path):
    """--quick's plain part alternates the Trainer's epoch with a plain PyTorch loop on the same
    model and batch, and reports unetkit's seconds over the plain loop's (no speed floor: the
    machine may be loaded)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_speed",
                                                  REPO / "benchmarks" / "train_speed.py")
    train_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_speed)
    out = tmp_path / "speed.json"
    skip = ",".join(p for p in train_speed.PARTS if p != "plain")
    assert train_speed.main(["--quick", "--device", "cpu", "--data", str(tmp_path / "absent"),
                             "--skip", skip, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["errors"] == []
    [row] = [r for r in result["rows"] if r["part"] == "plain"]
    assert row["unetkit_s"] > 0 and row["plain_s"] > 0
    assert row["ratio"] == pytest.approx(row["unetkit_s"] / row["plain_s"], abs=2e-3)
    assert len(row["round_ratios"]) == row["rounds"] == 2
    assert row["unetkit_ms_per_step"] * row["steps_per_round"] * row["rounds"] == \
        pytest.approx(1000 * row["unetkit_s"], rel=1e-2)
