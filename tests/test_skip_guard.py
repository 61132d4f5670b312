"""Under CI a skipped test fails the run, except a GPU-only one; locally a skip stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CASES = '''
import pytest

def test_runs():
    assert True

@pytest.mark.gpu
def test_gpu_only():
    pytest.skip("needs CUDA")
'''

MISSING = '''
def test_missing_data():
    import pytest
    pytest.skip("real data set not found")
'''


def pytest_run(folder: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER")}
    if ci:
        env["CI"] = "true"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "skip_guard", "-p",
                           "no:cacheprovider", "-p", "no:xdist", str(folder)], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", [False, True])
def test_gpu_only_skip_passes_everywhere(tmp_path, ci):
    (tmp_path / "test_cases.py").write_text(CASES)
    proc = pytest_run(tmp_path, ci)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skips: 0 unexpected, 1 GPU-only" in proc.stdout


@pytest.mark.parametrize("ci, code", [(False, 0), (True, 1)])
def test_any_other_skip_fails_under_ci_only(tmp_path, ci, code):
    (tmp_path / "test_cases.py").write_text(CASES + MISSING)
    proc = pytest_run(tmp_path, ci)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "skips: 1 unexpected, 1 GPU-only" in proc.stdout
    assert "skipped: test_cases.py::test_missing_data" in proc.stdout
