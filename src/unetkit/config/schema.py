"""The run configuration: dataclasses are the one source of defaults, types and meaning.

A recipe is a short YAML file of changes from these defaults; `--set a.b=value` changes one
field more. Values given on the command line are parsed with `ast.literal_eval` (never `eval`),
and an unknown key is an error that names the nearest valid key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message says how to fix it."""


@dataclass
class ModelConfig:
    arch: str = "unet"  # "unet" (the classic U-Net) or "timm-unet" (U-Net on a timm encoder)
    in_channels: int = 3
    base_channels: int = 64  # width of the first level; doubles at each level down
    depth: int = 4  # number of 2x down-samplings (the classic U-Net has 4)
    bilinear: bool = False  # bilinear up-sampling + 1x1 conv instead of 2x2 transposed conv
    head_channels: int = 0  # >0 adds Conv(->head_channels)+BN+ReLU before the 1x1 output conv
    encoder: str = "resnet34"  # timm model name, for arch "timm-unet"
    # Widths of the timm U-Net's decoder stages, coarsest first, one per encoder stage; None:
    # 256, 128, 64, ... halving down to 16. Most of a light encoder's U-Net is its decoder:
    # [128, 64, 32, 16, 8] halves EfficientNet-Lite0's cost at 256x256 (RESULTS.md, video).
    decoder_channels: list[int] | None = None
    # None, "imagenet" (downloads through timm), "imagenet-local" (the checkpoint an installed
    # package ships: EfficientNet-Lite0/1/2, see offline_weights.py) or a file path.
    encoder_weights: str | None = None
    freeze_encoder_epochs: int = 0  # keep the pretrained encoder fixed for the first N epochs


@dataclass
class SplitConfig:
    train: str | None = None  # file of stems (one per line), relative to the data root or absolute
    val: str | None = None  # without it: a seeded val_fraction of `train`; the rest is the test set
    val_fraction: float = 0.1  # used when no split files are given: a seeded random split
    test_fraction: float = 0.0  # held out from both train and val in a random split
    seed: int = 42
    group_by: str | None = None  # regex whose first group names an item's group (never split)
    group_table: str | None = None  # CSV (relative to the data root) mapping group -> larger group;
    group_column: str | None = None  # its column used, keyed by its first column (must exist)


@dataclass
class DataConfig:
    root: str | None = None
    layout: str = "auto"  # auto | kvasir | neopolyp | isbi | carvana | custom
    images: str | None = None  # sub-folder of images (set by the layout unless given)
    masks: str | None = None  # sub-folder of masks (set by the layout unless given)
    mask_suffix: str = ""  # mask stem = image stem + suffix (Carvana: "_mask")
    classes: list[str] = field(default_factory=lambda: ["background", "foreground"])
    mask_encoding: str = "binary"  # binary (grey >= threshold) | color | index
    mask_threshold: int = 128
    class_colors: list[list[int]] | None = None  # RGB per class, for mask_encoding "color"
    image_size: list[int] = field(default_factory=lambda: [256, 256])  # [height, width]
    mean: list[float] | None = None  # input normalisation; None: the model's default
    std: list[float] | None = None
    ignore_index: int | None = None  # mask value (e.g. 255) that neither loss nor metrics count
    cache_dir: str | None = None  # where decoded, resized arrays are kept between runs
    rotation_invariant: bool = False  # no "up" (microscopy): --tta adds 90-degree rotations
    # Negative frames (every pixel background, e.g. colonoscopy frames without a polyp): folders
    # of images only, relative to the data root or to the folder holding it. See negatives.py.
    negatives: list[str] = field(default_factory=list)
    negative_fraction: float | None = None  # share of each training batch; None: as they come
    negative_val_fraction: float = 0.2  # of the negative folders' images, held out for validation
    missing_masks: str = "error"  # error | negative: an image without a mask is all background
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class LossConfig:
    bce: float = 1.0  # weight of BCE (binary) or cross-entropy (multi-class)
    dice: float = 1.0  # weight of soft Dice
    squared_dice: bool = False  # Dice denominator sum(p^2)+sum(g^2) instead of sum(p)+sum(g)
    dice_include_background: bool = True
    class_weights: list[float] | None = None  # cross-entropy weight per class
    # Weight of the structure loss (boundary-weighted BCE + IoU, PraNet's; see structure.py).
    structure: float = 0.0
    structure_kernel: int = 31  # side of its averaging window, in pixels (31 at 352x352)


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 8
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | linear | constant | plateau
    warmup_epochs: float = 0.0
    # The validation score that picks the best weights and drives the plateau schedule: mDice
    # (per image, the polyp literature's) or dice (data-set level). A rare class is better
    # served by dice: per image, predicting it falsely on an image without it scores that
    # image 0 for the class, so early epochs that never predict it look best by mDice.
    monitor: str = "mDice"  # mDice | mIoU | dice | iou
    plateau_factor: float = 0.5  # ReduceLROnPlateau on the monitored score
    plateau_patience: int = 3
    min_lr: float = 1e-6
    loss: LossConfig = field(default_factory=LossConfig)
    augment: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model; falls back to eager if compiling fails
    # default | reduce-overhead (CUDA graphs) | max-autotune[-no-cudagraphs]
    compile_mode: str = "default"
    deterministic: bool = False  # deterministic algorithms: bit-identical reruns and resumes
    eval_batch_size: int = 32
    samples: int = 4  # validation panels written to samples/
    threshold: float = 0.5  # probability above which a binary pixel is foreground
    nan_policy: str = "stop"  # a NaN/inf training loss: stop the run, or skip that step
    sync_batchnorm: bool = False  # under torchrun: BatchNorm statistics of the global batch
    # Deep supervision: loss weights of 1x1 side heads on the decoder stages, finest first (the
    # stage below the output first); [] for none. The heads exist in training only: they are
    # never part of model.safetensors, exported files or predictions.
    deep_supervision: list[float] = field(default_factory=list)
    # Multi-scale training: each batch is resized by one of these factors (drawn per step), to
    # multiples of the model's stride; e.g. [0.75, 1.0, 1.25]. [] keeps data.image_size.
    multiscale: list[float] = field(default_factory=list)
    ema: float = 0.0  # decay of an exponential moving average of the weights (e.g. 0.999); 0 off.
    # With it, the averaged weights are the ones validated and saved (see ema.py).
    grad_clip: float = 0.0  # clip the gradients' global L2 norm to this value; 0 off
    loggers: list[str] = field(default_factory=list)  # any of tensorboard, mlflow, wandb
    log_images_every: int = 5  # sample panels to the loggers every N epochs and the last; 0: never


@dataclass
class Config:
    name: str = "custom"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def num_classes(self) -> int:
        return len(self.data.classes)

    @property
    def out_channels(self) -> int:
        """Binary tasks use one logit (sigmoid); multi-class tasks one logit per class (softmax)."""
        return 1 if self.num_classes == 2 else self.num_classes

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Dict <-> dataclass, with errors that say which key is wrong and what was meant.


def _from_dict(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(_unknown_key_message(f"{where}{key}", key, list(fields)))
        f = fields[key]
        sub = _dataclass_type(f)
        kwargs[key] = _from_dict(sub, value, f"{where}{key}.") if sub else value
    obj = cls(**kwargs)
    _check_types(obj, where)
    return obj


def _dataclass_type(f: dataclasses.Field):
    return {"ModelConfig": ModelConfig, "DataConfig": DataConfig, "TrainConfig": TrainConfig,
            "LossConfig": LossConfig, "SplitConfig": SplitConfig}.get(str(f.type))


def _check_types(obj, where: str) -> None:
    """Catch the usual slips (a string where a number belongs) at load time, not mid-training."""
    for f in dataclasses.fields(obj):
        value, kind = getattr(obj, f.name), str(f.type)
        if value is None:
            if "None" not in kind:
                raise ConfigError(f"{where}{f.name} must not be empty")
            continue
        if kind.startswith("float") and isinstance(value, str):
            try:  # YAML 1.1 reads "1e-4" (no dot) as a string
                value = float(value)
            except ValueError:
                pass
            setattr(obj, f.name, value)
        if kind.startswith("int") and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"{where}{f.name} must be an integer, got {value!r}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind.startswith("float") and not number:
            raise ConfigError(f"{where}{f.name} must be a number, got {value!r}")
        if kind.startswith("float"):
            setattr(obj, f.name, float(value))
        if kind == "bool" and not isinstance(value, bool):
            raise ConfigError(f"{where}{f.name} must be true or false, got {value!r}")
        if kind.startswith("str") and not isinstance(value, str):
            setattr(obj, f.name, str(value))
        if kind.startswith("list") and not isinstance(value, list):
            raise ConfigError(f"{where}{f.name} must be a list, got {value!r}")


def _all_keys(cls=Config, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        sub = _dataclass_type(f)
        keys += _all_keys(sub, f"{prefix}{f.name}.") if sub else [f"{prefix}{f.name}"]
    return keys


def _unknown_key_message(path: str, key: str, siblings: list[str]) -> str:
    close = difflib.get_close_matches(path, _all_keys(), n=1, cutoff=0.5)
    close = close or difflib.get_close_matches(key, siblings, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys here: {', '.join(siblings)}"
    return f"unknown config key '{path}'{hint}"


# Keys that moved: old name -> new name. Configs, recipes and runs that use the old name still
# load (the value is moved; giving both with different values is an error).
MOVED = {"train.loss.ignore_index": "data.ignore_index"}


def migrate(values: dict) -> dict:
    """A copy of `values` with every key of `MOVED` at its new place."""
    values = copy.deepcopy(values)
    for old, new in MOVED.items():
        *path, key = old.split(".")
        node = values
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or key not in node:
            continue
        value, (section, name) = node.pop(key), new.split(".")
        current = values.setdefault(section, {}).get(name)
        if current is not None and value is not None and current != value:
            raise ConfigError(f"{old} is now {new}; give it once (found {value!r} and "
                              f"{current!r})")
        if current is None:
            values[section][name] = value
    return values


def from_dict(values: dict) -> Config:
    return _from_dict(Config, migrate(values or {}), "")










# ---------------------------------------------------------------------------------------------
# Recipes and files.
