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

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from unetkit.core.files import atomic_write, read_limited, write_text
from unetkit.core.metric_names import point_keys
from unetkit.core.text import plural
from unetkit.core.version import __version__
from unetkit.data.preprocess import Preprocess

MAX_CARD_BYTES = 10_000_000  # a config.json is a few KB
MAX_METRICS_BYTES = 50_000_000  # metrics.csv: a few hundred bytes an epoch


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
            parts.append(f"{plural(len(shapes), 'tensor')} differ in shape (first: {shapes[0]})")
        if missing:
            parts.append(f"{plural(len(missing), 'tensor')} missing (first: {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} unexpected tensors (first: {extra[0]})")
        raise RunError(f"{source}: these weights belong to another architecture or class count: "
                       f"{'; '.join(parts)}")


def model_card(cfg, metrics: dict | None = None) -> dict:
    """config.json: what `load_model` needs to rebuild the model and use it, and its scores.

    The input's size and normalisation are written once, in the summary (`image_size`, `mean`,
    `std`); `preprocess` adds how pixels get there (decode, resize, scale), from the same
    `Preprocess` object training and prediction use."""
    pre = None
    if cfg.data.mean is not None:
        pre = {k: v for k, v in Preprocess.from_config(cfg).to_dict().items()
               if k not in ("image_size", "mean", "std")}
    return {
        "library": "unetkit", "unetkit_version": __version__,
        "arch": cfg.model.arch, "in_channels": cfg.model.in_channels,
        "out_channels": cfg.out_channels, "classes": cfg.data.classes,
        "mask_encoding": cfg.data.mask_encoding, "class_colors": cfg.data.class_colors,
        "image_size": cfg.data.image_size, "mean": cfg.data.mean, "std": cfg.data.std,
        "preprocess": pre, "threshold": cfg.train.threshold, "metrics": metrics or {},
        "config": cfg.to_dict(),
    }


def write_model_card(run_dir: Path, cfg, metrics: dict | None = None) -> None:
    write_text(run_dir / "config.json", json.dumps(model_card(cfg, metrics), indent=2))


def read_run_card(run_dir: str | Path) -> dict:
    """One run's config.json, size-limited and parsed (an ensemble's card: `runs.check`)."""
    path = Path(run_dir) / "config.json"
    try:
        data = read_limited(path, MAX_CARD_BYTES, "a unetkit config.json (a few KB)",
                            inside=run_dir, error=RunError)
    except FileNotFoundError:
        raise RunError(f"{run_dir}: no config.json; is this a unetkit run folder (made by "
                       "`unetkit train`)?") from None
    try:
        card = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RunError(f"{path}: damaged JSON ({exc})") from None
    if not isinstance(card, dict) or not isinstance(card.get("config"), dict):
        raise RunError(f"{path}: not a unetkit model card (no 'config' mapping)")
    if isinstance(card.get("metrics"), dict):  # older cards: the point scores as mDice, mIoU
        card["metrics"] = point_keys(card["metrics"])
    return card


def check_finite(state: dict, source) -> None:
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise RunError(f"{source}: tensor {k} holds NaN or infinite values; these weights "
                           "cannot give meaningful masks (restore the file, or train again)")


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
    """A run's metrics.csv (size-limited, inside its run folder), or [] when there is none."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return []
    try:
        text = read_limited(path, MAX_METRICS_BYTES, "the metrics.csv training wrote",
                            inside=path.parent, error=RunError).decode()
        rows = [{k: float(v) if k != "epoch" else int(v) for k, v in row.items() if v != ""}
                for row in csv.DictReader(io.StringIO(text))]
        return [point_keys(row, "val_") for row in rows]  # val_mDice of older runs
    except FileNotFoundError:
        raise RunError(f"{path}: a link to a file that does not exist; delete it") from None
    except (UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
        if isinstance(exc, RunError):
            raise
        raise RunError(f"{path}: damaged ({type(exc).__name__}: {exc}); restore it or delete "
                       "it (training starts its history again)") from None
