"""A run's ONNX model (`model.onnx` or `model.int8.onnx`) behind the interface of a PyTorch model,
so `Predictor` runs it through ONNX Runtime with the same preprocessing and thresholds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from unetkit.core.extras import require
from unetkit.models.unet import pad_to_multiple
from unetkit.runs.folder import RunError


class OnnxModel:
    """An exported model run by ONNX Runtime, called like the PyTorch model: (B, C, H, W) float
    tensor -> (B, K, H, W) logits tensor, any H and W."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = require("onnxruntime", "onnx", "the ONNX backend")
        opts = ort.SessionOptions()
        # Idle worker threads sleep instead of spinning: on a few cores the video path's
        # decoding and encoding threads need them (+9-13 % frames/s on 2 cores, 256x256).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types for damaged files
            raise RunError(f"{path}: not a loadable ONNX model ({exc}); export it again") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.multiple = int(meta.get("input_multiple", 1))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x, h, w = pad_to_multiple(x, self.multiple)  # as the PyTorch model pads
        out = self.session.run(None, {self.input_name: x.detach().cpu().float().numpy()})[0]
        return torch.from_numpy(out)[..., :h, :w].to(x.device)
