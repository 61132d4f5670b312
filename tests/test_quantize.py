"""int8 ONNX models: kept when they segment like the float model, refused (nothing written) when
they do not."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from conftest import run_cli
from run_fixtures import make_run
from unetkit import load_model
from unetkit.data.synthetic import write_dataset
from unetkit.deploy.export import export_onnx
from unetkit.inference.predictor import Predictor
from unetkit.io.images import read_image
from unetkit.runs.folder import RunError

TINY = ["model.base_channels=8", "model.depth=3", "data.image_size=[64, 64]",
        "data.split.val_fraction=0.25"]


@pytest.fixture(scope="module")
def quantisable(tmp_path_factory):
    """A random tiny U-Net whose last layer is scaled so its logits are large and centred on 0
    (a trained model's are; a random one's hug 0, where any rounding flips pixels), and a data
    set whose masks are that model's own float predictions, so that the float model scores
    mDice 1 and the int8 model's mDice is its agreement with the float one."""
    d = tmp_path_factory.mktemp("int8")
    data = write_dataset(d / "data", count=32, size=64)
    run = make_run(d / "run", TINY)
    model = load_model(run)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    predictor = Predictor(model, model.unetkit_config)
    paths = sorted((data / "images").glob("*.jpg"))
    images = [read_image(p) for p in paths]
    with torch.no_grad():
        logits = torch.logit(torch.stack(predictor.probabilities(images)).clamp(1e-6, 1 - 1e-6))
        head.weight *= 8 / float(logits.std())
        head.bias -= float(logits.median()) * 8 / float(logits.std())
    run = make_run(d / "run", TINY, model=model)
    predictor = Predictor.from_run(run)
    for path, labels in zip(paths, predictor.predict(images), strict=True):
        Image.fromarray(labels * 255).save(data / "masks" / f"{path.stem}.png")
    export_onnx(run, run / "model.onnx")
    return run, data


def test_int8_is_kept_when_its_dice_holds(quantisable, tmp_path):
    run, data = quantisable
    proc = run_cli("export", str(run), "--format", "int8", "--data", str(data),
                   "--out", str(run / "model.int8.onnx"), "--quiet")
    check = json.loads((run / "model.int8.json").read_text())["check"]
    assert check["float_mDice_point"] == pytest.approx(1.0) and check["images"] == 8
    assert check["mDice_point_drop"] <= 0.01 and check["int8_mDice_point"] > 0.95
    assert "mDice@point int8" in proc.stdout
    # the kept model runs through the same Predictor, on images it was not calibrated on
    int8 = Predictor.from_run(run, backend="int8")
    img = read_image(sorted((data / "images").glob("*.jpg"))[0])
    ref = Predictor.from_run(run).predict([img])[0]
    assert (int8.predict([img])[0] == ref).mean() > 0.97


def test_int8_is_refused_when_dice_drops_and_nothing_is_written(quantisable, tmp_path,
                                                                monkeypatch):
    """The check itself: an int8 model scored 0.2 below the float one is not kept."""
    import unetkit.deploy.quantize as q

    run, data = quantisable
    real, calls = q.evaluate_predictor, []

    def lower_for_int8(predictor, *args, **kwargs):  # scored second: float first, then int8
        scores = real(predictor, *args, **kwargs)
        calls.append(predictor)
        if len(calls) == 2:
            scores["mDice_point"] -= 0.2
        return scores

    monkeypatch.setattr(q, "evaluate_predictor", lower_for_int8)
    out = tmp_path / "m.int8.onnx"
    with pytest.raises(RunError, match="not kept"):
        q.export_int8(run, out, data, progress=False)
    assert not out.exists() and not out.with_suffix(".json").exists()
    proc = run_cli("export", str(run), "--format", "int8", "--out", str(out), check=False)
    assert proc.returncode == 2 and "--data" in proc.stderr


def test_the_first_and_the_depthwise_convolutions_stay_float():
    """Found by the graph's structure (the group attribute), not by layer names."""
    from onnx import TensorProto, helper

    from unetkit.deploy.quantize import float_convolutions

    def conv(name, x, y, group=1):
        return helper.make_node("Conv", [x, f"{name}.w"], [y], name=name, group=group)

    nodes = [conv("stem", "x", "a"), conv("dw", "a", "b", group=8), conv("pw", "b", "c"),
             helper.make_node("Relu", ["c"], ["d"], name="relu"), conv("head", "d", "y")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    assert float_convolutions(helper.make_model(graph)) == ["stem", "dw"]
