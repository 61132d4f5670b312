"""Shared fixtures: the real data sets beside the checkout, tiny synthetic data, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("UNETKIT_DATA", REPO.parent / "shared" / "data"))
SRC = REPO / "src"


def real_data(name: str) -> Path:
    """The path of a real data set, or a skip that says where it was looked for."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data set {path} not found (set UNETKIT_DATA to the folder holding it)")
    return path


def run_cli(*args: str, cwd: Path | None = None, check: bool = True,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the real `unetkit` command (as `python -m unetkit`, from this checkout's sources)."""
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "unetkit", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"unetkit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """48 synthetic 64x64 polyp images in the Kvasir-SEG layout."""
    from unetkit.data.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synthetic"), count=48, size=64)
