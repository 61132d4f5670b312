"""Experiment tracking: TensorBoard, MLflow and Weights & Biases (`train.loggers`).

Each tool is one small class with the same four calls: `start(config, first_epoch)` (the
resolved configuration as parameters; first_epoch > 0 when resumed), `log_epoch(row)` (the row
`metrics.csv` gets, under the same names, step = epoch), `log_images(panels, epoch)` (the
validation sample panels, every `train.log_images_every` epochs) and `finish(run_dir, status)`
(the run folder's files as artifacts, where the tool has artifacts, and the run's end).

Training never waits for a tool and never stops because of one: `Loggers` runs every call on
one background thread, in order, and a tool whose call raises (server down, disk full, package
broken) is named in one warning and switched off for the rest of the run. Only the first process
of a distributed run logs. Where a tool keeps a run id (MLflow, W&B), it is recorded in
RUN_DIR/tracking.json, so `unetkit train --resume` continues the same run.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from unetkit.config.schema import ConfigError
from unetkit.core.extras import install_hint, installed

# The run folder's files a tool keeps as artifacts (checkpoints/ is training state, not a result).
ARTIFACTS = ("model.safetensors", "config.json", "config.yaml", "metrics.csv", "curves.png",
             "samples")
TRACKING_FILE = "tracking.json"  # the tools' run ids, for --resume
FINISH_TIMEOUT = 300.0  # seconds the end of training waits for the tools (uploads, a slow server)
WANDB_INIT_TIMEOUT = 20.0  # seconds before W&B gives up reaching its server (unless set)


def flatten(values: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}: the configuration as flat parameters."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _recorded(run_dir: Path) -> dict:
    from unetkit.core.files import read_limited
    from unetkit.runs.folder import RunError

    try:
        data = read_limited(run_dir / TRACKING_FILE, 1_000_000, "the tracking.json training "
                            "wrote", inside=run_dir, error=RunError)
        return json.loads(data)
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
        return {}


def _record(run_dir: Path, tool: str, values: dict) -> None:
    from unetkit.core.files import write_text

    ids = _recorded(run_dir)
    ids[tool] = values
    write_text(run_dir / TRACKING_FILE, json.dumps(ids, indent=2))


class TensorBoardLogger:
    """Event files in RUN_DIR/tensorboard/, so `tensorboard --logdir runs/` compares runs."""

    def __init__(self, run_dir: Path, log: Callable):
        self.run_dir, self.log, self.writer = run_dir, log, None

    def start(self, config: dict, first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # purge_step: a run resumed from an older checkpoint hides the epochs it trains again.
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"),
                                    purge_step=first_epoch + 1 if first_epoch else None)
        params = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                  for k, v in flatten(config).items()}
        score = {f"val_{config['train']['monitor']}": 0.0}  # a column of the HParams table
        for summary in hparams(params, score):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in params.items()))

    def log_epoch(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def log_images(self, panels: list[tuple[str, np.ndarray]], epoch: int) -> None:
        for name, image in panels:
            self.writer.add_image(f"samples/{name}", image, epoch, dataformats="HWC")

    def finish(self, run_dir: Path, status: str) -> None:
        self.writer.close()


class MLflowLogger:
    """MLflow's own settings: MLFLOW_TRACKING_URI (default: a store in the run folder,
    RUN_DIR/mlflow.db with artifacts in RUN_DIR/mlartifacts, which `mlflow ui --backend-store-uri
    sqlite:///RUN_DIR/mlflow.db` opens) and MLFLOW_EXPERIMENT_NAME (default "unetkit"). The run
    id and store are recorded so a resumed run continues the same run."""

    def __init__(self, run_dir: Path, log: Callable):
        self.run_dir, self.log, self.client, self.run_id = run_dir, log, None, None

    def start(self, config: dict, first_epoch: int) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        recorded = _recorded(self.run_dir).get("mlflow", {})
        own = f"sqlite:///{(self.run_dir / 'mlflow.db').resolve()}"  # beside the run's files
        uri = os.environ.get("MLFLOW_TRACKING_URI") or recorded.get("tracking_uri") or own
        if uri.startswith(("http://", "https://")):  # a server that is down fails here, at
            import requests  # once, rather than after MLflow's minutes of retries

            requests.get(uri.rstrip("/") + "/health", timeout=10).raise_for_status()
        self.client = MlflowClient(tracking_uri=uri)
        if recorded.get("run_id") and recorded.get("tracking_uri") == uri:
            self.run_id = recorded["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            known = self.client.get_run(self.run_id).data.params
            self.log(f"mlflow: continuing run {self.run_id} in {uri}")
        else:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "unetkit"
            experiment = self.client.get_experiment_by_name(name)
            artifacts = (self.run_dir / "mlartifacts").resolve().as_uri() if uri == own else None
            exp_id = experiment.experiment_id if experiment else \
                self.client.create_experiment(name, artifact_location=artifacts)
            run = self.client.create_run(exp_id, run_name=self.run_dir.name, tags={
                "unetkit.run_dir": str(self.run_dir.resolve()), "unetkit.recipe": config["name"]})
            self.run_id, known = run.info.run_id, {}
            _record(self.run_dir, "mlflow", {"run_id": self.run_id, "tracking_uri": uri})
            self.log(f"mlflow: run {self.run_id} in {uri}")
        # Parameters cannot change once logged; a resumed run adds only the ones it lacks.
        params = [Param(k, str(v)[:6000]) for k, v in flatten(config).items() if k not in known]
        for i in range(0, len(params), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_epoch(self, row: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), now, row["epoch"]) for k, v in row.items() if k != "epoch"])

    def log_images(self, panels: list[tuple[str, np.ndarray]], epoch: int) -> None:
        for name, image in panels:
            self.client.log_image(self.run_id, image, key=f"samples/{name}", step=epoch)

    def finish(self, run_dir: Path, status: str) -> None:
        for name in ARTIFACTS if status == "FINISHED" else ():
            path = run_dir / name
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), name)
            elif path.exists():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)


class WandbLogger:
    """Weights & Biases, with its usual variables (WANDB_MODE, WANDB_PROJECT, WANDB_ENTITY,
    WANDB_API_KEY...); the local files go to RUN_DIR/wandb/. When the server cannot be reached
    (no network, no login), it says so once and logs offline: `wandb sync` uploads it later."""

    def __init__(self, run_dir: Path, log: Callable):
        self.run_dir, self.log, self.run = run_dir, log, None

    def start(self, config: dict, first_epoch: int) -> None:
        import wandb

        recorded = _recorded(self.run_dir).get("wandb", {})
        settings = {} if os.environ.get("WANDB_INIT_TIMEOUT") else \
            {"init_timeout": WANDB_INIT_TIMEOUT}
        kwargs = {"project": os.environ.get("WANDB_PROJECT") or "unetkit",
                  "name": self.run_dir.name, "dir": str(self.run_dir), "config": config,
                  "id": recorded.get("id"), "resume": "allow" if recorded.get("id") else None,
                  "settings": wandb.Settings(console="off", **settings)}
        try:
            self.run = wandb.init(**kwargs)
        except Exception as exc:  # no network, no login, a server that does not answer
            if os.environ.get("WANDB_MODE") == "offline":
                raise
            self.log(f"wandb: cannot reach the W&B server ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else ''}); logging offline to "
                     f"{self.run_dir / 'wandb'} (upload later with `wandb sync`)")
            self.run = wandb.init(mode="offline", **kwargs)
        _record(self.run_dir, "wandb", {"id": self.run.id, "project": self.run.project})

    def log_epoch(self, row: dict) -> None:
        self.run.log({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    def log_images(self, panels: list[tuple[str, np.ndarray]], epoch: int) -> None:
        import wandb

        self.run.log({"samples": [wandb.Image(image, caption=name) for name, image in panels]},
                     step=epoch)

    def finish(self, run_dir: Path, status: str) -> None:
        import wandb

        if status == "FINISHED":
            artifact = wandb.Artifact(f"run-{self.run.id}", type="model")
            for name in ARTIFACTS:
                path = run_dir / name
                if path.is_dir():
                    artifact.add_dir(str(path), name)
                elif path.exists():
                    artifact.add_file(str(path))
            self.run.log_artifact(artifact)
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)
        wandb.teardown()  # waits until W&B's own process has written RUN_DIR/wandb completely


# The registry of `train.loggers` names: name -> (class, the module it needs, the extra).
LOGGERS = {
    "tensorboard": (TensorBoardLogger, "tensorboard", "tensorboard"),
    "mlflow": (MLflowLogger, "mlflow", "mlflow"),
    "wandb": (WandbLogger, "wandb", "wandb"),
}
LOGGER_NAMES = tuple(LOGGERS)


def check(names: list[str]) -> None:
    """Known names, each once, their packages installed: checked before any data is read."""
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"train.loggers: unknown logger '{name}'; choose from "
                              f"{', '.join(LOGGER_NAMES)}")
        module, extra = LOGGERS[name][1], LOGGERS[name][2]
        if not installed(module):
            raise ConfigError(f"train.loggers names {name}, but {module} is not installed: "
                              f"{install_hint(extra)} (or remove {name} from train.loggers)")
    if len(set(names)) != len(names):
        raise ConfigError(f"train.loggers names a logger twice: {names}")


class Loggers:
    """The configured tools behind one interface; every call runs on one background thread."""

    def __init__(self, names: list[str], run_dir: Path, log: Callable = print,
                 images_every: int = 0):
        self.run_dir, self.log, self.images_every = Path(run_dir), log, images_every
        self.active = {name: LOGGERS[name][0](self.run_dir, log) for name in names}
        self.calls: queue.Queue = queue.Queue()
        self.worker = None
        self.closed = False
        if self.active:
            self.worker = threading.Thread(target=self._work, name="unetkit-loggers", daemon=True)
            self.worker.start()

    def __bool__(self) -> bool:
        return bool(self.active)

    def _work(self) -> None:
        while True:
            item = self.calls.get()
            if item is None:
                return
            method, args = item
            for name, logger in list(self.active.items()):
                try:
                    getattr(logger, method)(*args)
                except Exception as exc:  # any failure of a tool: warn once, switch it off
                    del self.active[name]
                    self.log(f"warning: train.loggers: {name} failed in {method} "
                             f"({type(exc).__name__}: {exc}); it is off for the rest of this "
                             "run, training goes on")

    def _call(self, method: str, *args) -> None:
        if self.worker is not None and not self.closed:
            self.calls.put((method, args))

    def start(self, config: dict, first_epoch: int) -> None:
        self._call("start", config, first_epoch)

    def log_epoch(self, row: dict) -> None:
        self._call("log_epoch", dict(row))

    def wants_images(self, epoch: int, last_epoch: int) -> bool:
        every = self.images_every
        return bool(self.active) and every > 0 and (epoch % every == 0 or epoch == last_epoch)

    def log_images(self, panels: list[tuple[str, np.ndarray]], epoch: int) -> None:
        self._call("log_images", panels, epoch)

    def close(self, status: str = "FINISHED") -> None:
        """Artifacts and the end of each tool's run (status FAILED: no artifacts); waits for the
        queued calls, at most FINISH_TIMEOUT seconds. Later calls do nothing."""
        if self.worker is None or self.closed:
            return
        self._call("finish", self.run_dir, status)
        self.closed = True
        self.calls.put(None)
        self.worker.join(10)
        busy = ", ".join(list(self.active))  # list(): the worker may drop a tool meanwhile
        if self.worker.is_alive():
            self.log(f"train.loggers: waiting for {busy} to finish (at most "
                     f"{FINISH_TIMEOUT:.0f} s)")
            self.worker.join(FINISH_TIMEOUT - 10)
        if self.worker.is_alive():
            self.log(f"warning: train.loggers: {busy} still busy after "
                     f"{FINISH_TIMEOUT:.0f} s; not waiting longer (the run folder is complete)")
