"""int8 quantisation of a run's ONNX model, kept only when it segments as well as the float one.

ONNX Runtime's static quantisation (QDQ format, int8 weights per output channel, uint8
activations) with activation ranges calibrated on training images, so convolutions run as int8
kernels. Quantisation can cost accuracy, so the int8 model is scored against the float ONNX model
(itself checked against PyTorch when exported) on a validation split, and written only when its
mDice@point is at most `tolerance` below the float model's: the same rule as the export's parity
check, on segmentations instead of logits.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from unetkit.core.extras import require
from unetkit.core.files import atomic_write, check_outputs, write_text, written_by_unetkit
from unetkit.core.version import __version__
from unetkit.data.splits import resolve_split
from unetkit.deploy.export import own_files
from unetkit.evaluation.evaluate import evaluate_predictor
from unetkit.inference.onnx import OnnxModel
from unetkit.inference.predictor import ONNX_FILES, Predictor
from unetkit.runs.check import resolve_model_dir, run_config
from unetkit.runs.folder import RunError

# The largest mDice@point drop (absolute, on the validation split) accepted from int8 quantisation.
# On Kvasir-SEG the spread of mDice@point between training seeds is ~0.01; a larger loss is a model
# that quantises badly (extreme activations), not noise.
TOLERANCE = 0.01
CALIBRATION_IMAGES = 32


def calibration_batches(predictor: Predictor, paths: list[Path], multiple: int) -> list[np.ndarray]:
    """Training images as the network sees them (the run's preprocessing), padded to its stride."""
    out = []
    for path in paths:
        x = predictor.inputs([predictor.read(path)])
        ph, pw = (-x.shape[2]) % multiple, (-x.shape[3]) % multiple
        out.append(F.pad(x, (0, pw, 0, ph), mode="replicate").cpu().numpy())
    return out


def float_convolutions(model) -> list[str]:
    """The convolutions quantisation leaves in float: the first, which sees the image itself,
    and the grouped (depthwise) ones, whose filters of 9 weights per channel lose most to int8
    and which do little of the work. On the polyp-sota-cpu model (EfficientNet-Lite0, Kvasir-SEG
    val) quantising every convolution lost 0.040 mDice@point, all but the first 0.011, all but these
    0.001 (see benchmarks/RESULTS.md)."""
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    grouped = [n for n in convs[1:] if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    return [n.name for n in convs[:1] + grouped if n.name]


def export_int8(run_dir, out, data_dir, split: str = "val", tolerance: float = TOLERANCE,
                calibration: int = CALIBRATION_IMAGES, progress: bool = True, log=print,
                force: bool = False) -> dict:
    """Quantise RUN_DIR/model.onnx to `out` (and `out`.json: the scores of both models), or
    raise RunError, writing nothing, when int8 loses more than `tolerance` mDice@point on
    `split`."""
    import onnx
    require("onnxruntime", "onnx", "int8 export")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    run_dir = resolve_model_dir(run_dir)
    float_path = run_dir / ONNX_FILES["onnx"]
    if not float_path.exists():
        raise RunError(f"{float_path}: no ONNX model to quantise; make it first with "
                       f"`unetkit export {run_dir} --format onnx --out {float_path}`")
    out = Path(out)
    described = out.with_suffix(".json")
    check_outputs([(out, "the int8 model"), (described, "its description")],
                  inputs=[float_path], run_dirs=[run_dir],
                  new_only=[] if force or written_by_unetkit(described) else [described],
                  owned=own_files(run_dir, out, described))
    if not tolerance >= 0:  # NaN too
        raise RunError(f"--tolerance {tolerance}: give the largest mDice@point drop "
                       "accepted (>= 0)")
    cfg = run_config(run_dir)
    float_model = OnnxModel(float_path)
    float_predictor = Predictor(float_model, cfg, "cpu")
    items = resolve_split(cfg, Path(data_dir), "train")[:calibration]
    batches = calibration_batches(float_predictor, [it.image for it in items], float_model.multiple)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {float_model.input_name: x}

    with tempfile.TemporaryDirectory() as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        # ONNX shape inference + graph optimisation (symbolic inference: for transformers only)
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        keep_float = float_convolutions(onnx.load(str(pre)))
        # Convolutions only (nearly all the work): graphs exported from "same"-padding encoders
        # (EfficientNet-Lite) compute their pad sizes with float arithmetic, which must stay
        # exact; quantised, it pads by a wrong amount and the U-Net's skips no longer line up.
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8,
                        op_types_to_quantize=["Conv", "ConvTranspose"],
                        nodes_to_exclude=keep_float)
        proto = onnx.load(str(q))
        del proto.metadata_props[:]  # the float model's (input_multiple, classes, ...) + ours
        for p in onnx.load(str(float_path), load_external_data=False).metadata_props:
            proto.metadata_props.add(key=p.key, value=p.value)
        proto.metadata_props.add(key="quantization", value="int8 static QDQ, per channel")
        onnx.save(proto, str(q))
        log(f"scoring float and int8 models on the '{split}' split of {data_dir}")
        scores = {name: evaluate_predictor(Predictor(OnnxModel(path), cfg, "cpu"), data_dir,
                                           split, progress=progress)
                  for name, path in (("float", float_path), ("int8", q))}
        drop = scores["float"]["mDice_point"] - scores["int8"]["mDice_point"]
        check = {"split": split, "data": str(data_dir), "images": scores["float"]["images"],
                 "float_mDice_point": scores["float"]["mDice_point"],
                 "int8_mDice_point": scores["int8"]["mDice_point"],
                 "float_dice": scores["float"]["dice"], "int8_dice": scores["int8"]["dice"],
                 "mDice_point_drop": drop, "tolerance": tolerance,
                 "calibration_images": len(batches),
                 "float_convolutions": len(keep_float)}
        if not np.isfinite(drop) or drop > tolerance:
            raise RunError(f"int8 model not kept: mDice@point {check['int8_mDice_point']:.4f} "
                           f"vs float {check['float_mDice_point']:.4f} on {split} (drop "
                           f"{drop:.4f} > tolerance {tolerance}); use the float model "
                           "(--backend onnx)")
        out = Path(out)
        with q.open("rb") as src:
            atomic_write(out, lambda f: shutil.copyfileobj(src, f))
    sidecar = {"source": str(float_path), "quantization": "int8 static QDQ, per channel",
               "unetkit_version": __version__, "check": check}
    write_text(out.with_suffix(".json"), json.dumps(sidecar, indent=2))
    return sidecar
