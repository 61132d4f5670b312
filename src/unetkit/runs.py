"""The run folder: everything needed to use a trained model, written atomically.

    RUN_DIR/config.yaml          the fully resolved configuration
    RUN_DIR/model.safetensors    the best weights (plain safetensors)
    RUN_DIR/config.json          architecture, classes, input size, normalisation, metrics
    RUN_DIR/checkpoints/last.pt  training state for --resume (loads with weights_only=True)
    RUN_DIR/metrics.csv, curves.png, samples/*.png

Every file is written through `files.atomic_write` (an exclusive temporary file in the same
folder, renamed over the old one), so a crash or a full disk during a save leaves the previous
file intact.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from . import __version__
from .files import atomic_write, write_bytes, write_text  # noqa: F401 (the one writer)
from .preprocess import Preprocess


def __getattr__(name: str):
    """`runs.load_model`, where it used to live (it builds models, so it is in `loading`)."""
    if name == "load_model":
        from .loading import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RunError(ValueError):
    """A run folder or file that cannot be used; the message names it and says what to do."""


def save_weights(model: nn.Module, path: str | Path) -> None:
    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    data = safetensors_bytes(state, metadata={"format": "pt"})
    atomic_write(path, lambda f: f.write(data), durable=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load safetensors weights, failing with what differs when they belong to another model."""
    path = Path(path)
    try:
        state = load_file(str(path))
    except FileNotFoundError:
        raise RunError(f"{path}: no weights file") from None
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise RunError(f"{path}: not a readable safetensors file ({exc})") from None
    check_state_dict(model, state, path)
    from .runcheck import check_finite  # the checks import this module: imported here

    check_finite(state, path)
    model.load_state_dict(state)


def check_state_dict(model: nn.Module, state: dict, source) -> None:
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    extra = [k for k in state if k not in ours]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in ours.items() if k in state and state[k].shape != v.shape]
    if missing or extra or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} tensors differ in shape (first: {shapes[0]})")
        if missing:
            parts.append(f"{len(missing)} tensors missing (first: {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected tensors (first: {extra[0]})")
        raise RunError(f"{source}: these weights belong to another architecture or class count: "
                       f"{'; '.join(parts)}")


def model_card(cfg, metrics: dict | None = None) -> dict:
    """config.json: what `load_model` needs to rebuild the model and use it, and its scores."""
    return {
        "library": "unetkit", "unetkit_version": __version__,
        "arch": cfg.model.arch, "in_channels": cfg.model.in_channels,
        "out_channels": cfg.out_channels, "classes": cfg.data.classes,
        "mask_encoding": cfg.data.mask_encoding, "class_colors": cfg.data.class_colors,
        "image_size": cfg.data.image_size, "mean": cfg.data.mean, "std": cfg.data.std,
        "preprocess": None if cfg.data.mean is None else Preprocess.from_config(cfg).to_dict(),
        "threshold": cfg.train.threshold, "metrics": metrics or {},
        "config": cfg.to_dict(),
    }


def write_model_card(run_dir: Path, cfg, metrics: dict | None = None) -> None:
    write_text(run_dir / "config.json", json.dumps(model_card(cfg, metrics), indent=2))


def read_model_card(run_dir: str | Path) -> dict:
    from .runcheck import read_card  # the checks import this module: imported here

    return read_card(Path(run_dir))


def run_config(run_dir: str | Path):
    """The Config a run was trained with (from config.json, which travels with the weights),
    validated with training's rules (see `runcheck`)."""
    from .runcheck import checked_config

    return checked_config(run_dir)


def resolve_model_dir(name: str | Path) -> Path:
    """A local run folder, or a Hub model named explicitly as hf://user/name (see `runcheck`)."""
    from .runcheck import resolve_model_dir as resolve

    return resolve(name)


def write_metrics_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    columns = list(dict.fromkeys(k for row in rows for k in row))  # a resumed run may add some
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def read_metrics_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: float(v) if k != "epoch" else int(v) for k, v in row.items() if v != ""}
                for row in csv.DictReader(f)]
