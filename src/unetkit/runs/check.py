"""A run folder is untrusted input: everything read from it is checked before it is used.

- Where a model comes from: a local folder, or a Hugging Face Hub model named explicitly as
  `hf://user/name` (optionally `hf://user/name@revision`). Nothing else reaches the network: a
  path that does not exist is "no such run folder", even when it looks like `user/name`.
- `config.json`: size-limited, parsed, then validated with training's rules on what prediction
  uses (`config.validate_for_inference`: the model, classes, encoding, preprocessing, the
  threshold; a run trained with a logger or a learning rate this machine would refuse still
  loads), and the model's size counted on the model; its summary fields must agree with its
  configuration; a timm encoder must be one timm knows locally (a `hf-hub:` name, which
  timm would download, is refused) and is always built without pretrained weights.
- `model.safetensors`: its header (tensor names and shapes, read without loading any tensor)
  must match the model the configuration describes, built on PyTorch's "meta" device (no
  memory); only then are the tensors loaded, and they must be finite.
- `model.onnx`: its input and output channels must match `config.json`.
"""

from __future__ import annotations

import re
from pathlib import Path

from unetkit import config as config_mod
from unetkit.core.text import plural
from unetkit.models.size import MAX_PARAMETERS, check_model_size, meta_model
from unetkit.runs.ensemble import ensemble_card, is_ensemble
from unetkit.runs.folder import RunError, read_run_card

HUB_PREFIX = "hf://"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model_dir(name: str | Path) -> Path:
    """A local run folder, or `hf://user/name[@revision]` downloaded with huggingface_hub."""
    text = str(name)
    if text.startswith(HUB_PREFIX):
        return download_hub_model(text[len(HUB_PREFIX):])
    path = Path(name)
    if path.is_dir():
        return path
    if path.exists():
        raise RunError(f"{name}: a file, not a run folder (give the folder holding config.json "
                       "and model.safetensors)")
    hint = (f"; a Hugging Face Hub model is named {HUB_PREFIX}{text}" if HUB_ID.match(text)
            else "")
    raise RunError(f"{name}: no such run folder{hint}")


# What a Hub model folder holds (see `export --format hub`); nothing else is fetched.
HUB_DOWNLOAD = ("config.json", "model.safetensors", "operating_point.json")


def download_hub_model(repo: str) -> Path:
    repo_id, _, revision = repo.partition("@")
    if not HUB_ID.match(repo_id):
        raise RunError(f"{HUB_PREFIX}{repo}: a Hub model is named {HUB_PREFIX}user/name "
                       "(optionally @revision)")
    from huggingface_hub import snapshot_download  # comes with timm, a core dependency
    try:
        return Path(snapshot_download(repo_id, revision=revision or None,
                                      allow_patterns=list(HUB_DOWNLOAD)))
    except Exception as exc:  # network errors, unknown repositories, gated models
        raise RunError(f"{HUB_PREFIX}{repo}: could not download ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def read_model_card(run_dir: str | Path) -> dict:
    """config.json of a run, or the first member's card of an ensemble (see `runs.ensemble`)."""
    if is_ensemble(run_dir):
        return ensemble_card(run_dir)
    return read_run_card(run_dir)


def run_config(run_dir: str | Path):
    """The Config of a run folder, checked on what prediction uses, or a RunError."""
    path = Path(run_dir) / "config.json"
    card = read_model_card(run_dir)
    try:
        cfg = config_mod.from_dict(card["config"])
        config_mod.validate_for_inference(cfg)  # what prediction uses; see config.rules
    except (config_mod.ConfigError, TypeError) as exc:
        raise RunError(f"{path}: {exc}") from None
    d = cfg.data
    if d.mean is None or d.std is None:
        raise RunError(f"{path}: config.data.mean/std are missing; a trained run records them")
    summary = {"arch": cfg.model.arch, "in_channels": cfg.model.in_channels,
               "out_channels": cfg.out_channels, "classes": d.classes,
               "image_size": d.image_size, "mean": d.mean, "std": d.std}
    differ = [k for k, v in summary.items() if k in card and card[k] != v]
    if differ:
        k = differ[0]
        raise RunError(f"{path}: '{k}' is {card[k]!r} but config.{k} says {summary[k]!r}; the "
                       "file was edited by hand or damaged")
    if cfg.model.arch == "timm-unet":
        check_local_encoder(cfg.model.encoder, path)
    cfg.model.encoder_weights = None  # the run's weights replace pretrained ones: never fetched
    return cfg


def check_local_encoder(name: str, source) -> None:
    """A timm encoder name from a file is built only if timm knows it without the network."""
    import timm

    if ":" in name or "/" in name or not timm.is_model(name):
        raise RunError(f"{source}: model.encoder '{name}' is not a timm architecture known "
                       "locally; unetkit never downloads code or weights named by a run folder")


def check_weights_file(path: Path, cfg) -> None:
    """The safetensors header against the configured model, before any tensor is allocated."""
    from safetensors import safe_open

    model = meta_model(cfg)
    try:
        check_model_size(cfg, model)
    except config_mod.ConfigError as exc:
        raise RunError(f"{path.parent / 'config.json'}: {exc}") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except FileNotFoundError:
        raise RunError(f"{path}: no weights file") from None
    except Exception as exc:  # safetensors' own error types for damaged headers
        raise RunError(f"{path}: not a readable safetensors file ({exc})") from None
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if sum(_numel(s) for s in shapes.values()) > 2 * MAX_PARAMETERS:
        raise RunError(f"{path}: holds more numbers than any model unetkit builds")
    missing = [k for k in ours if k not in shapes]
    extra = [k for k in shapes if k not in ours]
    wrong = [f"{k}: file {shapes[k]} vs config {v}" for k, v in ours.items()
             if k in shapes and shapes[k] != v]
    if missing or extra or wrong:
        first = (wrong or [f"missing {k}" for k in missing] or [f"unexpected {k}" for k in extra])
        raise RunError(f"{path}: does not match config.json ({plural(len(wrong), 'shape')} differ, "
                       f"{plural(len(missing), 'tensor')} missing, {len(extra)} unexpected; first: "
                       f"{first[0]}); the weights belong to another model")


def _numel(shape: tuple) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def check_onnx_model(session, cfg, path: Path) -> None:
    """The ONNX graph's input channels and output classes against config.json."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) < 1:
        raise RunError(f"{path}: expected one image input and a logits output, found "
                       f"{plural(len(inputs), 'input')} and {plural(len(outputs), 'output')}")
    for what, shape, want in (("input channels", inputs[0].shape, cfg.model.in_channels),
                              ("output channels", outputs[0].shape, cfg.out_channels)):
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != want):
            raise RunError(f"{path}: its {what} are {shape} but config.json says {want}; "
                           "export the model again with `unetkit export`")
