"""The time experiment tracking adds to training: tiny CPU runs with and without
`train.loggers: [tensorboard, mlflow, wandb]`, alternated in one process.

Per epoch: the mean of metrics.csv's `seconds` over the epochs after the first (the tools start
on their background thread while the first epoch trains, so their start-up shows in epoch 1 and
in the whole run's wall time, both also reported). Wall times move with the machine's load, so
the CPU time of the whole run (this process and its children, W&B's service included) is
reported too: it counts the work the tools add, whatever else runs. MLflow writes to a local
SQLite store and W&B offline, both in a temporary folder; sample panels go to the tools every
`--images-every` epochs.

    python benchmarks/loggers_overhead.py                     # about 2 minutes on 2 CPU cores
    python benchmarks/loggers_overhead.py --epochs 8 --repeats 3 --json overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's unetkit

from unetkit import config as config_mod  # noqa: E402
from unetkit.data.synthetic import write_dataset  # noqa: E402
from unetkit.runs.folder import read_metrics_csv  # noqa: E402
from unetkit.training.fit import fit  # noqa: E402


def one_run(data: Path, out: Path, loggers: list[str], args) -> dict:
    overrides = ["model.base_channels=8", "model.depth=3", "data.image_size=[64,64]",
                 f"train.epochs={args.epochs}", "train.batch_size=8", "train.device=cpu",
                 "train.samples=4", f"train.log_images_every={args.images_every}",
                 f"train.loggers={loggers}"]
    cfg = config_mod.load(None, None, overrides, str(data))
    tic, cpu = time.perf_counter(), cpu_seconds()
    fit(cfg, out, progress=False, log=lambda *a: None)
    wall, cpu = time.perf_counter() - tic, cpu_seconds() - cpu
    seconds = [r["seconds"] for r in read_metrics_csv(out / "metrics.csv")]
    return {"per_epoch": statistics.mean(seconds[1:]), "first_epoch": seconds[0], "wall": wall,
            "cpu": cpu}


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--images", type=int, default=64, help="synthetic data set size")
    p.add_argument("--images-every", type=int, default=2)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args()
    args.json = str(Path(args.json).resolve()) if args.json else None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.chdir(tmp)  # MLflow's artifacts beside its store
        os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
                          WANDB_MODE="offline", WANDB_SILENT="true")
        data = write_dataset(tmp / "data", count=args.images, size=64)
        results = {"none": [], "all3": []}
        for i in range(args.repeats):  # alternated, so a change in machine load hits both
            for name, loggers in (("none", []), ("all3", ["tensorboard", "mlflow", "wandb"])):
                results[name].append(one_run(data, tmp / f"run-{name}-{i}", loggers, args))
    summary = {name: {k: statistics.mean(r[k] for r in runs) for k in runs[0]}
               for name, runs in results.items()}
    base, tracked = summary["none"], summary["all3"]
    print(f"{'loggers':8s} {'per epoch s':>12s} {'first epoch s':>14s} {'run wall s':>11s} "
          f"{'run CPU s':>10s}")
    for name, s in summary.items():
        print(f"{name:8s} {s['per_epoch']:12.3f} {s['first_epoch']:14.3f} {s['wall']:11.2f} "
              f"{s['cpu']:10.2f}")
    ratios = {k: tracked[k] / base[k] for k in base}
    print("ratio all3 / none: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": results,
                                               "summary": summary, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
