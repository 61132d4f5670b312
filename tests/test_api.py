"""The Python API: importing unetkit costs no torch, `Predictor.predict` takes one image or a
list, every public name is documented, and docs/python-api.md's examples run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, process_env
from run_fixtures import make_run

TINY = ["model.base_channels=8", "model.depth=3", "data.image_size=[64, 64]"]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                          "print('\\n'.join(sys.modules), file=sys.stderr)"],
                         env=process_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stderr.split())


def test_import_unetkit_imports_no_torch():
    modules = _modules_after("import unetkit\nfrom unetkit import config\n"
                             "config.load('demo')")
    assert "unetkit.config" in modules and "torch" not in modules


def test_help_imports_no_torch():
    """`python -m unetkit --help` and a verb's --help, checked through -X importtime."""
    for args in (["--help"], ["evaluate", "--help"], ["predict", "--help"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "unetkit", *args],
                              env=process_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "usage: unetkit" in proc.stdout
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "unetkit.cli.main" in imported  # the check sees the CLI's own imports
        assert not {m for m in imported if m.split(".")[0] == "torch"}, args
        # Nor the configuration's validation: parsing a command reads no schema.
        assert "unetkit.config.schema" not in imported, args


def test_public_names_resolve_and_are_documented():
    import unetkit

    assert "torch" not in dir(unetkit)
    for name in unetkit.__all__:
        obj = getattr(unetkit, name)
        if name != "__version__":
            assert (obj.__doc__ or "").strip(), f"unetkit.{name} has no docstring"
    for method in ("from_run", "predict", "probabilities"):
        assert getattr(unetkit.Predictor, method).__doc__, method
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        unetkit.nope  # noqa: B018


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from unetkit import Predictor

    run = make_run(tmp_path_factory.mktemp("api") / "run", TINY)
    return Predictor.from_run(run, "cpu")


def test_predict_one_image_or_a_list(predictor, tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    one = predictor.predict(rgb)
    assert isinstance(one, np.ndarray) and one.shape == (50, 70) and one.dtype == np.uint8
    assert np.array_equal(predictor.predict(path), one)  # a path reads as the array
    assert np.array_equal(predictor.predict(str(path)), one)
    many = predictor.predict([rgb, str(path), rgb[:20]])
    assert isinstance(many, list) and [m.shape for m in many] == [(50, 70), (50, 70), (20, 70)]
    assert np.array_equal(many[0], one)
    grey = predictor.predict(rgb[..., 0])  # (H, W): made RGB as a grey file would be
    assert grey.shape == (50, 70)
    assert predictor.predict([]) == []


def test_predict_refuses_what_is_not_an_image(predictor):
    from unetkit.io.budget import ImageError

    with pytest.raises(ImageError, match="uint8"):
        predictor.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ImageError, match="shape"):
        predictor.predict(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ImageError, match="file path or a NumPy array"):
        predictor.predict(42)


def test_the_documented_examples_run(tmp_path, synthetic_data):
    """Every ```python block of docs/python-api.md, in order, in one process."""
    text = (REPO / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    make_run(tmp_path / "runs" / "polyp", TINY)
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(tmp_path / "polyp.jpg")
    (tmp_path / "data").symlink_to(synthetic_data)
    script = "\n".join(blocks)
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600,
                          env=process_env(OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert Path(tmp_path / "runs" / "from-python" / "model.safetensors").exists()
