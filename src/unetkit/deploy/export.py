"""Taking a trained model out of unetkit: an ONNX file, or a Hugging Face Hub model folder.

ONNX: the network alone (normalised image in, raw logits out), with a dynamic batch, height and
width. The exported graph takes heights and widths that are multiples of the network's total
stride (`input_multiple` in the metadata); `OnnxModel` pads and crops around it exactly as the
PyTorch model does, so `Predictor` runs both backends with the same pre- and post-processing.
Every export is checked against PyTorch with ONNX Runtime before it is kept.

Hub: `model.safetensors` + `config.json` + a model card `README.md`, the layout
`huggingface_hub` uploads and downloads as it is; `load_model(folder or "hf://user/name")` reads it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from unetkit.core.choices import EXPORT_FORMATS
from unetkit.core.extras import require
from unetkit.core.files import atomic_write, check_outputs, write_text, written_by_unetkit
from unetkit.core.version import __version__
from unetkit.data.preprocess import Preprocess
from unetkit.inference.detection import OPERATING_POINT_FILE, read_operating_point, resolve_point
from unetkit.inference.onnx import OnnxModel
from unetkit.inference.predictor import ONNX_FILES
from unetkit.runs.check import HUB_PREFIX, read_model_card, resolve_model_dir
from unetkit.runs.folder import RunError
from unetkit.runs.loading import load_model

FORMATS = EXPORT_FORMATS  # int8: quantize.export_int8 (needs images to check on)
HUB_FILES = ("model.safetensors", "config.json", "operating_point.json", "README.md")
# The exporter's own opset (a lower one is converted down, with a warning); ONNX Runtime reads
# it since 1.14 (2023), TensorRT since 8.6, OpenVINO since 2023.0.
OPSET = 18
# Largest |ONNX - PyTorch| logit difference accepted at export time. Float32 kernels differ in
# summation order, which moves logits of a deep U-Net by ~1e-5; a wrong graph moves them by >0.1.
ATOL = 1e-3
MAX_SIDE_BLOCKS = 8192  # the largest exported height and width, in multiples of the stride


def onnx_out(run_dir, fmt: str, out) -> Path:
    """Where an export goes: `out`, or for ONNX formats the run folder's own `model.onnx` /
    `model.int8.onnx` (where `predict --backend onnx|int8` and `serve` look) when not given."""
    if out is not None:
        return Path(out)
    if fmt not in ONNX_FILES or str(run_dir).startswith(HUB_PREFIX):
        what = "Hub folder" if fmt == "hub" else ".onnx file"
        raise RunError(f"--format {fmt} needs --out: the {what} to write")
    return Path(run_dir) / ONNX_FILES[fmt]


def export(run_dir, fmt: str, out, force: bool = False) -> dict:
    """Export a run folder (or hf://user/name) as `fmt` ("onnx" or "hub") to `out`. Files that
    are already there and were not named (the .json beside the .onnx, a Hub folder's files)
    are replaced only with `force`; a run folder's own files never are."""
    if fmt == "onnx":
        return export_onnx(run_dir, out, force=force)
    if fmt == "hub":
        return export_hub(run_dir, out, force=force)
    if fmt == "int8":
        raise RunError("int8 export needs images to calibrate on and check with: "
                       "quantize.export_int8(run_dir, out, data_dir)")
    raise RunError(f"unknown export format '{fmt}'; use one of {', '.join(FORMATS)}")


def own_files(run_dir: Path, *outputs: Path) -> list[Path]:
    """The outputs an export may replace although they are run files: its own ONNX model and
    description in the run folder it exports (`predict --backend onnx` reads them there)."""
    return [p for p in outputs if p.resolve().parent == run_dir.resolve() and p.name in
            ("model.onnx", "model.json", "model.int8.onnx", "model.int8.json")]


def export_onnx(run_dir, out, opset: int = OPSET, force: bool = False) -> dict:
    """Write `out` (.onnx) and `out`.json (opset, sizes, check result); return the sidecar."""
    onnx = require("onnx", "onnx", "ONNX export")
    require("onnxscript", "onnx", "ONNX export")  # what torch.onnx's exporter writes with

    run_dir = resolve_model_dir(run_dir)
    out = Path(out)
    described = out.with_suffix(".json")
    check_outputs([(out, "the ONNX model"), (described, "its description")], run_dirs=[run_dir],
                  new_only=[] if force or written_by_unetkit(described) else [described],
                  owned=own_files(run_dir, out, described))
    model = load_model(run_dir, "cpu")
    cfg = model.unetkit_config
    # the operating point travels with the file: the calibrated one, else the training defaults
    point, _ = resolve_point(cfg, read_operating_point(run_dir))
    multiple = int(model.multiple)  # models.SegmentationModel
    h, w = (-(-s // multiple) * multiple for s in cfg.data.image_size)  # the training size, padded
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, cfg.model.in_channels, h, w, generator=gen)
    pre = Preprocess.from_config(cfg).to_dict()  # the input, as training and Predictor make it
    meta = {"unetkit_version": __version__, "opset": str(opset), "input_multiple": str(multiple),
            "image_size": json.dumps(pre["image_size"]), "mean": json.dumps(pre["mean"]),
            "std": json.dumps(pre["std"]), "preprocess": json.dumps(pre),
            "classes": json.dumps(cfg.data.classes),
            "threshold": str(point.threshold), "min_area": str(point.min_area)}

    def write(f) -> None:
        with tempfile.TemporaryDirectory() as d:
            raw = Path(d) / "model.onnx"
            export_graph(model, example, multiple, opset).save(str(raw))
            proto = onnx.load(str(raw))
            for key, value in meta.items():
                proto.metadata_props.add(key=key, value=value)
            proto.doc_string = "unetkit U-Net: normalised (B, C, H, W) image -> (B, K, H, W) logits"
            onnx.checker.check_model(proto)
            onnx.save(proto, str(raw))  # checked before it replaces anything at `out`
            meta["check"] = check_onnx(model, raw, cfg.model.in_channels, multiple)
            with raw.open("rb") as src:
                shutil.copyfileobj(src, f)

    atomic_write(out, write)
    sidecar = {k: (json.loads(v) if k in ("image_size", "mean", "std", "preprocess", "classes")
                   else v)
               for k, v in meta.items() if k != "check"}
    sidecar.update(opset=opset, input_multiple=multiple, check=meta["check"],
                   inputs="image: float32 (batch, channels, height, width), normalised "
                          "(x / 255 - mean) / std; height and width multiples of input_multiple",
                   outputs="logits: float32 (batch, classes, height, width); sigmoid for one "
                           "channel, softmax for more")
    write_text(out.with_suffix(".json"), json.dumps(sidecar, indent=2))
    return sidecar


def export_graph(model: torch.nn.Module, example: torch.Tensor, multiple: int, opset: int):
    """torch.onnx's exporter (torch.export): the batch, height and width are dynamic; height
    and width are declared multiples of the stride, so the padding branch, never taken for
    them, is not in the graph (`OnnxModel` pads other sizes as the PyTorch model does)."""
    from torch.export import Dim

    side = {"min": 1, "max": MAX_SIDE_BLOCKS}
    shapes = ({0: Dim("batch", min=1, max=4096), 2: multiple * Dim("height_blocks", **side),
               3: multiple * Dim("width_blocks", **side)},)
    return torch.onnx.export(model, (example,), input_names=["image"], output_names=["logits"],
                             opset_version=opset, dynamo=True, dynamic_shapes=shapes)


@torch.no_grad()
def check_onnx(model: torch.nn.Module, path: Path, channels: int, multiple: int,
               atol: float = ATOL) -> dict:
    """Compare ONNX Runtime with PyTorch on random inputs of two sizes other than the export's
    (so a frozen size fails here); raise if they differ by more than `atol`."""
    onnx_model = OnnxModel(path)
    worst = 0.0
    gen = torch.Generator().manual_seed(1)
    for b, h, w in ((1, 3 * multiple, 5 * multiple), (3, 2 * multiple + 7, 4 * multiple - 3)):
        x = torch.randn(b, channels, h, w, generator=gen)
        diff = (onnx_model(x) - model(x).float()).abs().max().item()
        worst = max(worst, diff)
    if not np.isfinite(worst) or worst > atol:
        raise RunError(f"{path}: ONNX Runtime differs from PyTorch by {worst:.3g} (> {atol}); "
                       "the export is wrong, please report it")
    return {"max_abs_logit_diff": worst, "atol": atol}


def export_hub(run_dir, out, force: bool = False) -> dict:
    """A Hub model folder: model.safetensors, config.json and a model card README.md."""
    run_dir = resolve_model_dir(run_dir)
    out = Path(out)
    files = [out / name for name in HUB_FILES]
    # A folder unetkit exported before (its config.json and README.md are unetkit's) is
    # replaced; any other file already there only with --force.
    earlier = written_by_unetkit(out / "config.json") and (
        written_by_unetkit(out / "README.md") or not (out / "README.md").exists())
    check_outputs([(f, f.name) for f in files], run_dirs=[run_dir],
                  new_only=[] if force or earlier else files,
                  owned=files if earlier and not (out / "config.yaml").exists() else [])
    load_model(run_dir, "cpu")  # fail here, not on the user's side, if the weights do not load
    card = read_model_card(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ["model.safetensors", "config.json"]
    if read_operating_point(run_dir) is not None:  # checked readable before it is shipped
        names.append(OPERATING_POINT_FILE)
    for name in names:
        with (run_dir / name).open("rb") as src:
            atomic_write(out / name, lambda f, s=src: shutil.copyfileobj(s, f))
    write_text(out / "README.md", model_card_markdown(card))
    return {"out": str(out), "files": names + ["README.md"]}


def model_card_markdown(card: dict) -> str:
    """The README.md of a Hub folder: what the model is, how it was trained, how to use it."""
    cfg = card.get("config", {})
    data, train = cfg.get("data", {}), cfg.get("train", {})
    metrics = card.get("metrics") or {}
    rows = "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in metrics.items() if not isinstance(v, (dict, list)))
    arch = card["arch"] if card["arch"] == "unet" else f"{card['arch']} ({cfg['model']['encoder']})"
    return f"""---
library_name: unetkit
pipeline_tag: image-segmentation
tags: [unetkit, u-net, image-segmentation]
---

# {cfg.get('name', 'unetkit model')}: U-Net segmentation model

{cfg.get('description', '')}

- Architecture: {arch}, {card['in_channels']} input channel(s), {card['out_channels']} output
  logit(s)
- Classes: {', '.join(card['classes'])} (mask encoding: {card['mask_encoding']})
- Input: resized to {card['image_size'][1]}x{card['image_size'][0]} (width x height), normalised
  with mean {card['mean']} and std {card['std']} on [0, 1] pixel values
- Training data: `{data.get('root')}` (layout {data.get('layout')}), {train.get('epochs')} epochs,
  batch {train.get('batch_size')}, {train.get('optimizer')} lr {train.get('lr')}
- Made with unetkit {card.get('unetkit_version')}; `config.json` holds the full configuration

## Validation metrics

mDice_point / mIoU_point: Dice / IoU of the thresholded mask per image, averaged over images (not
the polyp literature's mDice, which averages 256 thresholds); dice / iou: from the pixel counts
of the whole validation set.

| metric | value |
|---|---|
{rows or '| (none recorded) | |'}

## Use

```python
from unetkit import Predictor, load_model
model = load_model("THIS_FOLDER or hf://USER/NAME")   # a plain torch.nn.Module returning logits
masks = Predictor(model, model.unetkit_config).predict(list_of_hwc_uint8_images)
```
or `unetkit predict THIS_FOLDER images/ --out masks/`.

## Intended use and limits

For research and education: segmenting images like those it was trained on. Its scores hold
for the validation data above; images from other sources (devices, sites, resolutions) may score
much lower, so check it on your own data first.

**This model is not a medical device.** It has not been cleared or approved by any regulator
and must not be used to diagnose, treat or make decisions about patients.
"""
