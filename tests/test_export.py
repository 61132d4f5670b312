"""Export: ONNX (checked against PyTorch) and Hub folders (loading back identical)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from conftest import real_data, run_cli
from run_fixtures import make_run
from unetkit import load_model
from unetkit.deploy.export import ATOL, OPSET, export_onnx
from unetkit.inference.onnx import OnnxModel
from unetkit.inference.predictor import Predictor
from unetkit.io.images import read_image

TINY = ["model.base_channels=8", "model.depth=3", "data.image_size=[64, 64]"]


def test_onnx_export_records_opset_and_runs_any_size(tmp_path):
    run = make_run(tmp_path / "run", TINY)
    sidecar = export_onnx(run, tmp_path / "m.onnx")
    assert sidecar["opset"] == OPSET and sidecar["check"]["max_abs_logit_diff"] < ATOL
    assert json.loads((tmp_path / "m.json").read_text())["input_multiple"] == 8
    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["opset"] == str(OPSET) and proto.opset_import[0].version == OPSET
    model, onnx_model = load_model(run), OnnxModel(tmp_path / "m.onnx")
    x = torch.randn(3, 3, 45, 70)  # batch, height and width other than the export's
    with torch.no_grad():
        assert (onnx_model(x) - model(x)).abs().max() < ATOL


@pytest.mark.filterwarnings("error::DeprecationWarning", "error::FutureWarning")
def test_onnx_export_uses_the_current_exporter_without_deprecations(tmp_path):
    """torch.onnx's current exporter (torch.export, dynamo=True), its warnings not hidden: a
    deprecation on the export path fails here. Height and width are declared multiples of
    the stride (the padding branch is then not in the graph; OnnxModel pads)."""
    run = make_run(tmp_path / "run", TINY)
    export_onnx(run, tmp_path / "m.onnx")
    dims = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "8*height_blocks", "8*width_blocks"]
    assert dims[1].dim_value == 3


def test_onnx_matches_pytorch_on_real_images(tmp_path):
    """The classic U-Net at the Kvasir recipe's 256x256 on real polyp photos."""
    images = sorted((real_data("kvasir-seg") / "images").glob("*.jpg"))[:3]
    run = make_run(tmp_path / "run", ["model.base_channels=16", "data.image_size=[256, 256]"])
    export_onnx(run, run / "model.onnx")
    imgs = [read_image(p) for p in images]
    torch_p = Predictor.from_run(run, "cpu").probabilities(imgs)
    onnx_p = Predictor.from_run(run, backend="onnx").probabilities(imgs)
    for a, b in zip(torch_p, onnx_p, strict=False):
        # Probabilities: float32 summation-order noise only, far below any threshold's effect.
        assert (a - b).abs().max() < 1e-4


@pytest.mark.slow
def test_predict_backend_onnx_writes_the_same_masks(tmp_path):
    run = make_run(tmp_path / "run", TINY)
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, size in enumerate(((50, 70), (64, 64), (97, 33))):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(inputs / f"{i}.png")
    proc = run_cli("predict", str(run), str(inputs), "--out", str(tmp_path / "x"),
                   "--backend", "onnx", check=False)
    assert proc.returncode == 2 and "unetkit export" in proc.stderr  # says how to make it
    run_cli("export", str(run), "--format", "onnx", "--out", str(run / "model.onnx"))
    for backend in ("torch", "onnx"):
        run_cli("predict", str(run), str(inputs), "--out", str(tmp_path / backend), "--quiet",
                "--backend", backend, "--tile", "--overlay")
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "torch" / f"{i}.png"))
        b = np.asarray(Image.open(tmp_path / "onnx" / f"{i}.png"))
        assert (a != b).mean() < 1e-3
    assert (tmp_path / "onnx" / "summary.csv").exists()
    assert (tmp_path / "onnx" / "0_overlay.png").exists()


def test_onnx_predicts_an_image_per_core_and_keeps_the_inputs_order(tmp_path):
    """With ONNX Runtime `predict` runs one image per core at once; summary.json keeps the
    inputs' order, a file that breaks while read is reported and the rest are written."""
    import os

    from unetkit.inference.predict import predict_files
    from unetkit.inference.predictor import inference_workers

    assert inference_workers("onnx") == len(os.sched_getaffinity(0))
    assert inference_workers("torch") == 1
    run = make_run(tmp_path / "run", TINY)
    export_onnx(run, run / "model.onnx")
    rng = np.random.default_rng(1)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(9):
        size = (40 + 9 * i, 90 - 5 * i)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(inputs / f"{i}.png")
    data = (inputs / "4.png").read_bytes()
    (inputs / "4.png").write_bytes(data[: len(data) // 2])  # its header reads; its pixels do not
    for backend in ("torch", "onnx"):
        result = predict_files(run, [str(inputs)], tmp_path / backend, backend=backend,
                               progress=False, log=lambda *_: None)
        assert result["written"] == 8 and len(result["failed"]) == 1
        assert "4.png" in result["failed"][0]
        summary = json.loads((tmp_path / backend / "summary.json").read_text())
        assert [s["image"] for s in summary] == [f"{i}.png" for i in range(9) if i != 4]
        assert [(s["height"], s["width"]) for s in summary] == \
            [(40 + 9 * i, 90 - 5 * i) for i in range(9) if i != 4]
    for i in (0, 3, 8):
        a = np.asarray(Image.open(tmp_path / "torch" / f"{i}.png"))
        b = np.asarray(Image.open(tmp_path / "onnx" / f"{i}.png"))
        assert (a != b).mean() < 1e-3


def test_hub_folder_loads_back_identical(tmp_path):
    run = make_run(tmp_path / "run", TINY + ["model.in_channels=1"])
    run_cli("export", str(run), "--format", "hub", "--out", str(tmp_path / "hub"))
    hub = tmp_path / "hub"
    names = sorted(p.name for p in hub.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors"]
    card = (hub / "README.md").read_text()
    assert "not a medical device" in card and "mDice" in card and "library_name: unetkit" in card
    x = torch.randn(2, 1, 40, 56)
    with torch.no_grad():
        assert torch.equal(load_model(run)(x), load_model(str(hub))(x))


def test_hub_id_loads_through_huggingface_hub(tmp_path, monkeypatch):
    """A Hub model named explicitly (hf://user/name) goes to huggingface_hub.snapshot_download
    (replaced here by the exported folder, as no network is assumed) and loads as the run's
    model, through load_model, at a revision too; a bare "user/name" never reaches the Hub."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from unetkit.runs.folder import RunError

    run = make_run(tmp_path / "run", TINY)
    hub = tmp_path / "hub"
    run_cli("export", str(run), "--format", "hub", "--out", str(hub))
    asked = []

    def snapshot_download(repo_id, revision, allow_patterns):
        asked.append((repo_id, revision, sorted(allow_patterns)))
        return str(hub)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        expected = load_model(run)(x)
        assert torch.equal(load_model("hf://user/polyps")(x), expected)
        assert torch.equal(load_model("hf://user/polyps@v1")(x), expected)
    # operating_point.json too: a calibrated model keeps its operating point on the Hub
    files = ["config.json", "model.safetensors", "operating_point.json"]
    assert asked == [("user/polyps", None, files), ("user/polyps", "v1", files)]
    with pytest.raises(RunError, match="no such run folder; a Hugging Face Hub model is named "
                                       "hf://user/polyps"):
        load_model("user/polyps")
    assert len(asked) == 2


def test_export_rejects_unknown_format(tmp_path):
    from unetkit.deploy.export import export
    from unetkit.runs.folder import RunError

    with pytest.raises(RunError, match="onnx, hub"):
        export(make_run(tmp_path / "run", TINY), "tflite", tmp_path / "x")
