"""Experiment tracking: what TensorBoard, MLflow and W&B hold after a tiny run, read back through
each tool's own reader and compared with metrics.csv; a resumed run continues its MLflow run; a
tool that fails on every call changes nothing in training or in the run folder."""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import run_cli
from unetkit import config as config_mod
from unetkit.runs.folder import read_metrics_csv
from unetkit.training import loggers as loggers_mod
from unetkit.training.checks import check_training
from unetkit.training.fit import fit

TINY = ["model.base_channels=4", "model.depth=2", "data.image_size=[32,32]", "train.epochs=2",
        "train.batch_size=8", "train.device=cpu", "train.samples=2", "train.deterministic=true"]
COLUMNS = ("train_loss", "val_loss", "val_mDice_point", "val_mIoU_point", "val_dice", "val_iou",
           "lr", "seconds", "images_per_s")
RUN_FILES = ("config.yaml", "config.json", "model.safetensors", "metrics.csv", "curves.png",
             "checkpoints/last.pt")


def tiny_config(data, *more: str):
    return config_mod.load(None, None, [*TINY, *more], str(data))


def train(data, run_dir, *more: str, resume: bool = False, lines: list | None = None) -> list:
    lines = [] if lines is None else lines
    fit(tiny_config(data, *more), run_dir, resume=resume, progress=False,
        log=lambda *a: lines.append(" ".join(map(str, a))))
    return lines


@pytest.fixture(scope="module")
def tracked(synthetic_data, tmp_path_factory):
    """One 2-epoch run logged to all three tools (MLflow: a local SQLite store; W&B: offline)."""
    root = tmp_path_factory.mktemp("tracked")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)  # MLflow keeps artifacts beside the working folder
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("MLFLOW_EXPERIMENT_NAME", "unetkit-test")
    mp.setenv("WANDB_MODE", "offline")
    try:
        run = root / "run"
        lines = train(synthetic_data, run, "train.loggers=[tensorboard, mlflow, wandb]",
                      "train.log_images_every=1")
        yield {"run": run, "uri": uri, "lines": lines,
               "rows": read_metrics_csv(run / "metrics.csv")}
    finally:
        mp.undo()


def test_names_are_checked_before_training(monkeypatch):
    with pytest.raises(config_mod.ConfigError, match="choose from tensorboard, mlflow, wandb"):
        config_mod.load(None, None, ["train.loggers=[tensorbord]"])
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    cfg = config_mod.load(None, None, ["train.loggers=[wandb]"])  # a name is the config's
    with pytest.raises(config_mod.ConfigError, match=r"pip install 'unetkit\[wandb\]'"):
        check_training(cfg)  # its package is training's: checked when training starts
    assert config_mod.load(None, None, []).train.loggers == []  # none by default


def test_cli_refuses_an_unknown_logger_before_training(synthetic_data, tmp_path):
    out, config = tmp_path / "run", tmp_path / "tiny.yaml"
    config.write_text("name: tiny\n")
    proc = run_cli("train", "--config", str(config), "--data", str(synthetic_data), "--out",
                   str(out), "--set", "train.loggers=[tensorboard, mlfow]", check=False,
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "unknown logger 'mlfow'; choose from tensorboard, mlflow, wandb" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_tensorboard_events_match_metrics_csv(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tracked["run"] / "tensorboard"),
                              size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    rows = tracked["rows"]
    assert len(rows) == 2
    for key in COLUMNS:
        logged = events.Scalars(key)
        assert [e.step for e in logged] == [r["epoch"] for r in rows], key
        assert [e.value for e in logged] == pytest.approx([r[key] for r in rows], rel=1e-6), key
    images = [tag for tag in events.Tags()["images"] if tag.startswith("samples/")]
    assert len(images) == 2
    assert [e.step for e in events.Images(images[0])] == [1, 2]
    assert "config" in str(events.Tags()["tensors"])


def test_mlflow_run_matches_metrics_csv(tracked):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracked["uri"])
    run_id = loggers_mod._recorded(tracked["run"])["mlflow"]["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "unetkit-test"
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["model.base_channels"] == "4"
    rows = tracked["rows"]
    for key in COLUMNS:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [r["epoch"] for r in rows], key
        assert [m.value for m in history] == pytest.approx([r[key] for r in rows], rel=1e-12)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model.safetensors", "config.json", "config.yaml", "curves.png", "metrics.csv",
            "samples"} <= artifacts
    weights = client.download_artifacts(run_id, "model.safetensors", str(tracked["run"].parent))
    assert Path(weights).read_bytes() == (tracked["run"] / "model.safetensors").read_bytes()
    images = [a.path for a in client.list_artifacts(run_id, "images") if a.path.endswith(".png")]
    assert len(images) == 4  # 2 panels x 2 epochs


def wandb_records(path):
    """The records of a W&B run file, decoded with W&B's own protobuf schema. The file is a
    LevelDB-style log: a 7-byte header, then 32 KiB blocks of chunks (crc32, length, type)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block padding
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_files_match_metrics_csv(tracked):
    import json

    runs = list((tracked["run"] / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    history, config, artifacts = {}, {}, []
    for record in wandb_records(runs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            values = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                      for item in record.history.item}
            history.setdefault(values["_step"], {}).update(values)
        elif kind == "run":
            config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "artifact":
            artifacts += [entry.path for entry in record.artifact.manifest.contents]
    rows = tracked["rows"]
    assert sorted(history) == [r["epoch"] for r in rows]
    for row in rows:
        for key in COLUMNS:
            assert history[row["epoch"]][key] == pytest.approx(row[key], rel=1e-12), key
        assert history[row["epoch"]]["samples/count"] == 2  # the panels, every epoch here
    assert config["train"]["epochs"] == 2, config.get("train")
    assert {"model.safetensors", "config.json", "curves.png", "metrics.csv"} <= set(artifacts)
    assert not [line for line in tracked["lines"] if "warning" in line]


@pytest.mark.slow  # two runs, each starting MLflow and W&B
def test_resume_continues_the_same_run_and_wandb_goes_offline(synthetic_data, tmp_path,
                                                               monkeypatch):
    """MLflow and W&B continue their runs; W&B, with no login (as with no network), says so
    once per start and logs offline."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)  # the default experiment name
    run = tmp_path / "run"
    lines = train(synthetic_data, run, "train.loggers=[mlflow, wandb]", "train.epochs=1")
    first = loggers_mod._recorded(run)["mlflow"]["run_id"]
    wandb_id = loggers_mod._recorded(run)["wandb"]["id"]
    lines += train(synthetic_data, run, "train.loggers=[mlflow, wandb]", "train.epochs=2",
                   resume=True)
    assert f"mlflow: continuing run {first}" in "\n".join(lines)
    assert len([line for line in lines if "cannot reach the W&B server" in line]) == 2, lines
    assert not [line for line in lines if "warning" in line], lines
    assert loggers_mod._recorded(run)["wandb"]["id"] == wandb_id
    steps = []
    # W&B names an offline run's folder by its start time, to the second, and adds "-1" to the
    # second of two started in the same second (a 1-epoch resume can start that soon)
    for path in (run / "wandb").glob(f"offline-run-*-{wandb_id}*/run-{wandb_id}.wandb"):
        steps += [r.history.step.num for r in wandb_records(path)
                  if r.WhichOneof("record_type") == "history"]
    assert sorted(steps) == [1, 2]  # epoch 1 in the first offline run, epoch 2 in the resumed
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("unetkit").experiment_id])
    assert [r.info.run_id for r in runs] == [first]  # no second run
    rows = read_metrics_csv(run / "metrics.csv")
    history = sorted(client.get_metric_history(first, "val_loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(r["epoch"], r["val_loss"]) for r in rows]
    assert client.get_run(first).info.status == "FINISHED"


class Broken:
    """A tool that fails on every call, as a tracking server that is down would."""

    calls = 0

    def __init__(self, run_dir, log):
        pass

    def __getattr__(self, name):
        def fail(*args):
            Broken.calls += 1
            raise ConnectionError("tracking server unreachable")
        return fail


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_failing_loggers_change_nothing(synthetic_data, tracked, tmp_path, monkeypatch):
    """A tool raising on every call (in W&B's place) and an MLflow server that is down (a port
    nothing listens on): one warning each, and training as if they were not there."""
    monkeypatch.setitem(loggers_mod.LOGGERS, "wandb", (Broken, "wandb", "unetkit[wandb]"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    run = tmp_path / "tracked"
    lines = train(synthetic_data, run, "train.loggers=[wandb, mlflow, tensorboard]",
                  "train.log_images_every=1")
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 2, lines
    assert "wandb failed in start" in warnings[0] and "ConnectionError" in warnings[0]
    assert "mlflow failed in start" in warnings[1] and "ConnectionError" in warnings[1]
    assert Broken.calls == 1  # switched off after its first failure
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert len(list((run / "samples").glob("*.png"))) == 2
    assert len(read_metrics_csv(run / "metrics.csv")) == 2
    # The same deterministic training as the run whose three tools all worked: same weights.
    a = load_file(str(tracked["run"] / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a), "logging changed the trained weights"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))  # the other tool went on logging
    events.Reload()
    assert [e.step for e in events.Scalars("val_loss")] == [1, 2]
