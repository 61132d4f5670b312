"""The run configuration: each key's type, range, default and meaning, stated once, here.

The sections are pydantic dataclasses: pydantic checks the types when a configuration is built
(`from_dict`), and the same declarations give the JSON Schema (`json_schema()`: the reference
documentation and editors read it). A range is declared beside its key (`ge`, `gt`, `le`, `lt`)
and shows in the JSON Schema, but it is checked by `rules.check_ranges`, which knows what the
configuration is for: a run folder trained with a value this version refuses still predicts.

A recipe is a short YAML file of changes from these defaults; `--set a.b=value` changes one key
more (see `sources`). An unknown key is an error that names the nearest valid key (`errors`).
"""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt
from pydantic.dataclasses import dataclass

from unetkit.config import names as N
from unetkit.core.metric_names import POINT_RENAMES


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message says how to fix it."""


def _text_to_number(value):
    """YAML 1.1 (PyYAML) reads 1e-4 (no dot) as a string: numbers may come as text."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _number_to_text(value):
    """A name may be a number in YAML (`name: 2024`): it is the text the user wrote."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else value


def _duration_to_seconds(value):
    """`train.time_limit`: a number of seconds, or text such as 45m, 1.5h, 90s or 2h30m."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower().replace(" ", "")
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?"
                         r"(?:(\d+(?:\.\d+)?)s?)?", text)
    if not text or parts is None:
        raise ValueError(f"'{value}' is not a duration; write seconds or e.g. 45m, 1.5h, 2h30m")
    h, m, s = (float(p) if p else 0.0 for p in parts.groups())
    return h * 3600 + m * 60 + s


Int = StrictInt  # 2.5, "5" and true are slips, not integers
Bool = StrictBool  # true or false only ("yes" and 1 are refused)
Float = Annotated[StrictFloat, BeforeValidator(_text_to_number)]  # integers are numbers too
Text = Annotated[str, BeforeValidator(_number_to_text)]  # list items are strict: str only
Duration = Annotated[StrictFloat, BeforeValidator(_duration_to_seconds)]  # seconds

_SECTION = ConfigDict(extra="forbid")  # unknown keys are refused (errors.py names the nearest)
_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def key(default: Any = None, meaning: str = "", *, factory=None, names=(), **bounds):
    """One configuration key: its default (or `factory` for lists), meaning, range and allowed
    `names` (from `config.names`; checked by `rules.validate`, like the range)."""
    extra = {_BOUNDS[name]: value for name, value in bounds.items()}
    if names:
        extra["enum"] = list(names)
    if factory is not None:  # the JSON Schema shows a factory's value as the default
        extra["default"] = factory()
        return Field(default_factory=factory, description=meaning, json_schema_extra=extra)
    return Field(default, description=meaning, json_schema_extra=extra or None)


def section(cls, meaning: str):
    return Field(default_factory=cls, description=meaning)


@dataclass(config=_SECTION)
class ModelConfig:
    """The network: a classic U-Net, or a U-Net decoder on a timm encoder."""

    arch: Text = key("unet", "`unet` (the classic U-Net) or `timm-unet` (U-Net on a timm "
                     "encoder)", names=N.ARCHS)
    in_channels: Int = key(3, "channels of the input images (3: RGB, 1: grey)", ge=1, le=16)
    base_channels: Int = key(64, "width of the classic U-Net's first level; doubles at each "
                             "level down", ge=1, le=1024)
    depth: Int = key(4, "number of 2x down-samplings (the classic U-Net has 4)", ge=1, le=8)
    bilinear: Bool = key(False, "bilinear up-sampling + 1x1 convolution instead of a 2x2 "
                         "transposed convolution")
    head_channels: Int = key(0, "above 0: Conv(-> head_channels) + BN + ReLU before the 1x1 "
                             "output convolution", ge=0, le=4096)
    encoder: Text = key("resnet34", "timm model name of the encoder, for arch `timm-unet`")
    decoder_channels: list[Int] | None = key(
        None, "widths of the timm U-Net's decoder stages, coarsest first, one per encoder "
        "stage; null: 256, 128, 64, ... halving down to 16. Most of a light encoder's U-Net is "
        "its decoder: [128, 64, 32, 16, 8] halves EfficientNet-Lite0's cost at 256x256")
    encoder_weights: Text | None = key(
        None, "null (random), `imagenet` (timm's, downloaded once), `imagenet-local` (the "
        "checkpoint an installed package ships: EfficientNet-Lite0/1/2) or a file path")
    freeze_encoder_epochs: Int = key(0, "keep the pretrained encoder fixed for the first N "
                                     "epochs", ge=0)


@dataclass(config=_SECTION)
class SplitConfig:
    """Which images train, validate and test."""

    train: Text | None = key(None, "file of stems (one per line), relative to the data root "
                             "or absolute; null: every image")
    val: Text | None = key(None, "file of validation stems; null: a seeded val_fraction of "
                           "`train`, the rest beside test_fraction is the test set")
    val_fraction: Float = key(0.1, "share of the images validated on when no split files are "
                              "given (a seeded random split)", ge=0, lt=1)
    test_fraction: Float = key(0.0, "share held out from both train and val in a random split",
                               ge=0, lt=1)
    seed: Int = key(42, "seed of the random split")
    group_by: Text | None = key(None, "regular expression whose first group names an image's "
                                "group (a patient, a video): a group is never split")
    group_table: Text | None = key(None, "CSV file (relative to the data root) mapping a group "
                                   "to a larger group")
    group_column: Text | None = key(None, "the column of group_table used, keyed by its first "
                                    "column (must exist)")


@dataclass(config=_SECTION)
class DataConfig:
    """Where the images and masks are and how they are read."""

    root: Text | None = key(None, "the data folder (or give --data)")
    layout: Text = key("auto", "folder layout: detected (auto), named, or declared "
                       "(custom: give images and masks)", names=N.LAYOUT_NAMES)
    images: Text | None = key(None, "sub-folder of images (set by the layout unless given)")
    masks: Text | None = key(None, "sub-folder of masks (set by the layout unless given)")
    mask_suffix: Text = key("", "mask stem = image stem + suffix (Carvana: `_mask`)")
    classes: list[str] = key(meaning="class names, background first",
                             factory=lambda: ["background", "foreground"])
    mask_encoding: Text = key("binary", "how mask pixels give classes: binary (grey >= "
                        "mask_threshold), color (class_colors) or index (the value)",
                        names=N.MASK_ENCODINGS)
    mask_threshold: Int = key(128, "grey level from which a binary mask's pixel is foreground",
                              ge=1, le=255)
    class_colors: list[list[Int]] | None = key(None, "[R, G, B] per class, for mask_encoding "
                                               "`color`")
    image_size: list[Int] = key(meaning="[height, width] of training, each 8 to 8192",
                                factory=lambda: [256, 256])
    mean: list[Float] | None = key(None, "input normalisation, one per channel; null: the "
                                   "model's default")
    std: list[Float] | None = key(None, "input normalisation, one positive value per channel")
    ignore_index: Int | None = key(None, "mask value (e.g. 255) that neither loss nor metrics "
                                   "count; not a class index")
    cache_dir: Text | None = key(None, "where decoded, resized arrays are kept between runs")
    rotation_invariant: Bool = key(False, "the images have no `up` (microscopy): --tta adds "
                                   "90-degree rotations")
    negatives: list[str] = key(meaning="folders of negative frames (images only, every pixel "
                               "background), relative to the data root or to the folder "
                               "holding it", factory=list)
    negative_fraction: Float | None = key(None, "share of each training batch drawn from the "
                                          "negatives, in [0, 1); null: as they come")
    negative_val_fraction: Float = key(0.2, "share of the negative folders' images held out for "
                                       "validation", ge=0, lt=1)
    missing_masks: Text = key("error", "an image without a mask: `error`, or `negative` (all "
                              "background)", names=N.MISSING_MASKS)
    split: SplitConfig = section(SplitConfig, "which images train, validate and test")


@dataclass(config=_SECTION)
class LossConfig:
    """The training loss: a weighted sum of terms."""

    bce: Float = key(1.0, "weight of BCE (binary) or cross-entropy (multi-class)", ge=0, le=1000)
    dice: Float = key(1.0, "weight of the soft Dice loss", ge=0, le=1000)
    squared_dice: Bool = key(False, "Dice denominator sum(p^2) + sum(g^2) instead of "
                             "sum(p) + sum(g)")
    dice_include_background: Bool = key(True, "count the background class in the Dice loss")
    class_weights: list[Float] | None = key(None, "cross-entropy weight per class, "
                                            "non-negative")
    structure: Float = key(0.0, "weight of PraNet's structure loss (boundary-weighted BCE + "
                           "IoU)", ge=0, le=1000)
    structure_kernel: Int = key(31, "side of the structure loss's averaging window, in pixels "
                                "(31 at 352x352)", ge=1, le=255)


@dataclass(config=_SECTION)
class TrainConfig:
    """How the model is trained and validated."""

    epochs: Int = key(20, "passes over the training images", ge=1, le=1_000_000)
    time_limit: Duration | None = key(
        None, "end the run within this time, its schedule completed: seconds, or e.g. 45m, "
        "1.5h, 2h30m. The epochs that fit are re-estimated after each epoch, at most `epochs`; "
        "null: no limit", gt=0)
    batch_size: Int = key(8, "images per optimiser step", ge=1, le=4096)
    optimizer: Text = key("adamw", "the optimiser", names=N.OPTIMIZERS)
    lr: Float = key(1e-3, "peak learning rate", gt=0, le=10)
    weight_decay: Float = key(1e-4, "decoupled weight decay (adamw) or L2 penalty (adam, sgd)",
                              ge=0, le=1)
    schedule: Text = key("cosine", "the learning-rate schedule after warm-up (plateau: on "
                         "the monitored score)", names=N.SCHEDULES)
    warmup_epochs: Float = key(0.0, "epochs of linear warm-up", ge=0)
    monitor: Text = key("mDice_point", "the validation score that picks the best weights and "
                        "drives the plateau schedule: per image at the operating point "
                        "(mDice_point, mIoU_point) or data-set level (dice, iou: better for a "
                        "rare class)", names=N.MONITORS)
    plateau_factor: Float = key(0.5, "factor of the learning rate when the monitored score "
                                "stalls (schedule `plateau`)", gt=0, lt=1)
    plateau_patience: Int = key(3, "epochs without improvement before that", ge=0)
    min_lr: Float = key(1e-6, "the learning rate's floor", ge=0, le=10)
    loss: LossConfig = section(LossConfig, "the training loss")
    augment: list[dict[str, Any]] = key(meaning="augmentations, each {op: NAME, p: "
                                        "PROBABILITY, ...}", factory=list)
    seed: Int = key(0, "seed of initialisation, shuffling and augmentation")
    device: Text = key("auto", "auto | cpu | cuda | cuda:N")
    amp: Bool = key(True, "bf16 autocast on CUDA (ignored on the CPU)")
    channels_last: Bool = key(True, "channels-last memory format on CUDA")
    compile: Bool = key(False, "torch.compile the model; falls back to eager if compiling "
                        "fails")
    compile_mode: Text = key("default", "torch.compile's mode (reduce-overhead: CUDA graphs)",
                             names=N.COMPILE_MODES)
    deterministic: Bool = key(False, "deterministic algorithms: bit-identical reruns and "
                              "resumes")
    eval_batch_size: Int = key(32, "images per validation batch", ge=1, le=4096)
    samples: Int = key(4, "validation panels written to samples/", ge=0, le=1000)
    threshold: Float = key(0.5, "probability above which a binary pixel is foreground",
                           gt=0, lt=1)
    nan_policy: Text = key("stop", "a NaN or infinite training loss: `stop` the run, or `skip` "
                           "that step", names=N.POLICIES)
    sync_batchnorm: Bool = key(False, "under torchrun: BatchNorm statistics of the global batch")
    deep_supervision: list[Float] = key(
        meaning="loss weights (0 to 1000) of 1x1 side heads on the decoder stages, finest "
        "first; [] for none. The heads exist in training only", factory=list)
    multiscale: list[Float] = key(
        meaning="each batch is resized by one of these factors (0.25 to 4, drawn per step), "
        "e.g. [0.75, 1.0, 1.25]; [] keeps data.image_size", factory=list)
    ema: Float = key(0.0, "decay of an exponential moving average of the weights (e.g. "
                     "0.999), which is then validated and saved; 0: off", ge=0, lt=1)
    grad_clip: Float = key(0.0, "clip the gradients' global L2 norm to this value; 0: off",
                           ge=0)
    loggers: list[str] = key(meaning="experiment trackers: any of tensorboard, mlflow, wandb",
                             factory=list)
    log_images_every: Int = key(5, "sample panels to the loggers every N epochs and the last; "
                                "0: never", ge=0)


@dataclass(config=_SECTION)
class Config:
    """A unetkit run: what is trained on which data, and how."""

    name: Text = key("custom", "the run's name (a recipe's name by default)")
    description: Text = key("", "one line saying what the configuration is for")
    model: ModelConfig = section(ModelConfig, "the network")
    data: DataConfig = section(DataConfig, "the images and masks")
    train: TrainConfig = section(TrainConfig, "training and validation")

    @property
    def num_classes(self) -> int:
        return len(self.data.classes)

    @property
    def out_channels(self) -> int:
        """Binary tasks use one logit (sigmoid); multi-class tasks one logit per class (softmax)."""
        return 1 if self.num_classes == 2 else self.num_classes

    def to_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)


# Keys that moved: old name -> new name. Configs, recipes and runs that use the old name still
# load (the value is moved; giving both with different values is an error).
MOVED = {"train.loss.ignore_index": "data.ignore_index"}


# Values that were renamed: key -> {old value: new value}. train.monitor's mDice and mIoU were
# the operating point's per-image means; bare mDice now names only the literature's (see
# core.metric_names).
RENAMED_VALUES = {"train.monitor": POINT_RENAMES}


def _renamed(values: dict):
    """(key, its section's dict, old value) for every old value of `RENAMED_VALUES` present."""
    for dotted, names in RENAMED_VALUES.items():
        section, key = dotted.split(".")
        node = values.get(section)
        old = node.get(key) if isinstance(node, dict) else None
        if isinstance(old, str) and old in names:
            yield dotted, node, old


def renamed_notes(values: dict) -> list[str]:
    """What `migrate` renames in `values`, one line each (a configuration a user gives)."""
    return [f"{dotted}: {old} is now called {RENAMED_VALUES[dotted][old]} (the operating "
            f"point's per-image mean; a bare {old} is the literature's 256-threshold mean)"
            for dotted, _, old in _renamed(values)]


def migrate(values: dict) -> dict:
    """A copy of `values` with every key of `MOVED` at its new place and every old value of
    `RENAMED_VALUES` under its new name."""
    values = copy.deepcopy(values)
    for dotted, node, old in list(_renamed(values)):
        node[dotted.split(".")[1]] = RENAMED_VALUES[dotted][old]
    for old, new in MOVED.items():
        *path, name = old.split(".")
        node = values
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or name not in node:
            continue
        value, (part, name) = node.pop(name), new.split(".")
        current = values.setdefault(part, {}).get(name)
        if current is not None and value is not None and current != value:
            raise ConfigError(f"{old} is now {new}; give it once (found {value!r} and "
                              f"{current!r})")
        if current is None:
            values[part][name] = value
    return values
