"""Shared fixtures: the real data sets beside the checkout, tiny synthetic data, the CLI."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SHARED_DATA = Path(os.environ.get("UNETKIT_DATA", REPO.parent / "shared" / "data"))
SRC = REPO / "src"

# `make test` runs the suite on every core (pytest-xdist), one test per core: each worker, and
# each process it starts, computes on one thread. On small models two one-thread trainings side
# by side finish sooner than the same two one after the other on two threads each, and
# oversubscribed cores (two workers of two threads on two cores) are slower than either.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """The real-data trainings (test_*_real.py, minutes each) first, then the other slow tests,
    then the rest, so the suite does not end on one long test on one core while the others
    wait. The order is otherwise kept; every test is independent of the others."""
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None,
                                 not item.path.stem.endswith("_real")))


# Under CI a skip other than a GPU-only one fails the run (tests/skip_guard.py).
pytest_plugins = ["skip_guard"]


def real_data(name: str) -> Path:
    """The path of a real data set, or a skip that says where it was looked for."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data set {path} not found (set UNETKIT_DATA to the folder holding it)")
    return path


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts: this checkout's sources first on its path."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, **extra)


def start_server(args: list[str], env: dict, log_path: Path, ready=None, tries: int = 3,
                 wait: float = 240):
    """`python -m unetkit ARGS --port P` on a port the OS says is free, once it answers.

    Another process (a test on another xdist worker) may take the port between the OS's choice
    and the server's bind; the server then exits saying so, and is started again on another
    port. `ready(url)` raises until the server answers (default: an HTTP GET of the page) and
    what it returns is given back. Returns (process, url, what ready returned); the caller
    terminates the process."""
    import socket
    import time
    import urllib.request

    ready = ready or (lambda url: urllib.request.urlopen(url, timeout=5))
    for _ in range(tries):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}/"
        with log_path.open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "unetkit", *args, "--port", str(port)],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait
        while proc.poll() is None:
            try:
                return proc, url, ready(url)
            except Exception:  # noqa: BLE001 - not answering yet, whatever the client raises
                if time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(f"the server did not answer in {wait:.0f} s:\n"
                                         f"{log_path.read_text()}") from None
                time.sleep(1)
        text = log_path.read_text()
        if "in use" not in text and "empty port" not in text.lower():
            raise AssertionError(f"the server stopped:\n{text}")
    raise AssertionError(f"no free port in {tries} tries:\n{log_path.read_text()}")


def run_cli(*args: str, cwd: Path | None = None, check: bool = True, process: bool = False,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """`unetkit ARGS`: its exit code and what it printed.

    By default in this process, through the same `main` the command calls: a fresh interpreter
    spends about 3 s importing torch, and the suite makes some seventy such calls. An exception
    that `main` does not turn into an error line becomes exit code 1 with its traceback on
    stderr, as it would in a process. `process=True` runs the real command (`python -m unetkit`
    from this checkout's sources) for what only a process shows: the entry point, the warnings
    printed at start-up, a process killed or limited from outside.
    """
    if process:
        proc = subprocess.run([sys.executable, "-m", "unetkit", *args], cwd=cwd, env=process_env(),
                              capture_output=True, text=True, timeout=timeout)
    else:
        proc = _run_here(list(args), cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"unetkit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def _run_here(args: list[str], cwd: Path | None) -> subprocess.CompletedProcess:
    from unetkit.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd or os.getcwd()), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as exc:  # argparse's usage errors, and `raise SystemExit(msg)`
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:  # noqa: BLE001 - what a process would print before exiting with 1
            traceback.print_exc()
            rc = 1
    return subprocess.CompletedProcess(["unetkit", *args], rc, out.getvalue(), err.getvalue())


# The model that has learned: a small U-Net trained once per test run on a Kvasir-SEG subsample
# (the first 120 stems of the official medico2020 train list, the first 40 of its val list) at
# 96x96, which the tests of every verb use on real images. About a minute on two cores.
KVASIR_TRAIN, KVASIR_VAL, KVASIR_SIZE = 120, 40, 96
KVASIR_OVERRIDES = [
    f"data.image_size=[{KVASIR_SIZE},{KVASIR_SIZE}]", "model.base_channels=16",
    "train.epochs=20", "train.batch_size=8", "train.lr=3e-3", "train.weight_decay=1e-4",
    "train.schedule=cosine", "train.seed=0", "train.samples=2",
    "train.augment=[{'op': 'hflip', 'p': 0.5}, {'op': 'vflip', 'p': 0.5}]",
]


@pytest.fixture(scope="session")
def kvasir_model(tmp_path_factory) -> Path:
    """The run folder of the model above, trained once for the whole run: under pytest-xdist
    the workers share one copy (a file lock in the run's common temporary folder), so it is
    trained once, not once a worker. Treat it as read-only: copy it before writing into it."""
    from filelock import FileLock

    root = real_data("kvasir-seg")
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by every worker of this run
    home = base / "kvasir-model"
    run = home / "run"
    with FileLock(str(base / "kvasir-model.lock")):
        if not (run / "model.safetensors").is_file():
            from unetkit import config as config_mod
            from unetkit.training.fit import fit

            home.mkdir(exist_ok=True)
            splits = {}
            for name, n in (("train", KVASIR_TRAIN), ("val", KVASIR_VAL)):
                stems = (root / "splits" / f"medico2020-{name}.txt").read_text().split()[:n]
                splits[name] = home / f"{name}.txt"
                splits[name].write_text("\n".join(stems) + "\n")
            cfg = config_mod.load("kvasir-binary", data_root=str(root), overrides=[
                f"data.split.train={splits['train']}", f"data.split.val={splits['val']}",
                *KVASIR_OVERRIDES])
            fit(cfg, home / "training", progress=False, log=lambda *a: None)
            (home / "training").rename(run)  # complete or absent, never half there
    return run


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """48 synthetic 64x64 polyp images in the Kvasir-SEG layout."""
    from unetkit.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synthetic"), count=48, size=64)
