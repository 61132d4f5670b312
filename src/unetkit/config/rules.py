"""What a configuration must satisfy: allowed names, cross-field rules, the ranges its values
must lie in.

`validate(cfg)` (also `config.validate`) holds when `train` starts; `validate_for_inference(cfg)`
holds the same rules on what prediction uses when a run folder is loaded for `predict`,
`evaluate`, `export`, `submit` or `serve`. A value that would allocate without bound, divide by
zero, or silently give empty masks is refused with a message naming the key, before any data is
read or any model is built. The model's size is counted on the built model (`models.size`).
"""

from __future__ import annotations

import math

from unetkit.config.build import ranges
from unetkit.config.names import ALLOWED, LOGGERS, LOSS_TERMS
from unetkit.config.schema import ConfigError

MAX_SIDE = 8192  # data.image_size: each side of the training size
MAX_CLASSES = 255  # masks are uint8 class indices (and 255 is a usual ignore value)

# key: (lowest, highest) allowed, inclusive unless marked open ("(" / ")" beside it); None: no
# bound on that side. Declared beside each key in the schema (ge/gt/le/lt); fractions and
# probabilities exclude 1: a threshold of 1 marks nothing.
RANGES: dict[str, tuple] = ranges()


def allowed_values() -> dict[str, tuple[str, ...]]:
    """Config key -> its allowed names (see `config.names`)."""
    return dict(ALLOWED)


# What prediction reads of a run's configuration: the model, the data's classes, encoding and
# preprocessing, and the default threshold. Loading a run folder for prediction, evaluation or
# export checks only these (with the weights' integrity); the rest is training's business.
INFERENCE_KEYS = ("model.", "data.", "train.threshold")
TRAINING_ONLY = ("data.split.", "data.negative", "data.missing_masks")


def used_by_inference(key: str) -> bool:
    return key.startswith(INFERENCE_KEYS) and not key.startswith(TRAINING_ONLY)


def validate(cfg) -> None:
    """Every rule a configuration for training must satisfy: names, cross-field rules, ranges.

    What needs an engine (the augmentation ops, the loggers' packages, the model's size) is
    checked by `training.checks` when training starts."""
    _validate(cfg, lambda key: True)


def validate_for_inference(cfg) -> None:
    """The rules on what prediction uses (see INFERENCE_KEYS): a run trained with a logger or a
    learning rate this version would refuse still predicts."""
    _validate(cfg, used_by_inference)


def _validate(cfg, wanted) -> None:
    m, d = cfg.model, cfg.data
    for key, allowed in ALLOWED.items():
        if not wanted(key):
            continue
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got '{value}'")
    if cfg.num_classes < 2:
        raise ConfigError("data.classes needs at least two names, background first")
    if d.mask_encoding == "binary" and cfg.num_classes != 2:
        raise ConfigError("data.mask_encoding 'binary' needs exactly two classes; use 'color' or "
                          "'index' for more")
    if d.mask_encoding == "color":
        if not d.class_colors or len(d.class_colors) != cfg.num_classes:
            raise ConfigError("data.mask_encoding 'color' needs data.class_colors: one [R, G, B] "
                              "per class in data.classes")
    if len(d.image_size) != 2 or min(d.image_size) < 1:
        raise ConfigError(f"data.image_size must be [height, width], got {d.image_size}")
    if m.depth < 1:
        raise ConfigError("model.depth must be at least 1")
    if (d.mean is None) != (d.std is None):
        raise ConfigError("give both data.mean and data.std, or neither")
    check_ranges(cfg, wanted)
    if wanted("train.epochs"):
        _check_training_fields(cfg)


def _check_training_fields(cfg) -> None:
    d, t = cfg.data, cfg.train
    if t.epochs < 1 or t.batch_size < 1:
        raise ConfigError("train.epochs and train.batch_size must be at least 1")
    if bool(d.split.group_table) != bool(d.split.group_column):
        raise ConfigError("give both data.split.group_table and data.split.group_column, "
                          "or neither")
    if d.split.val_fraction + d.split.test_fraction >= 1:
        raise ConfigError("data.split.val_fraction + data.split.test_fraction must be below 1 "
                          "(something must be left to train on)")
    if sum(getattr(t.loss, name) for name in LOSS_TERMS) <= 0:
        raise ConfigError(f"train.loss: at least one of {', '.join(LOSS_TERMS)} must have a "
                          "positive weight")
    if d.negative_fraction is not None and not 0 <= d.negative_fraction < 1:
        raise ConfigError(f"data.negative_fraction must be in [0, 1) (a share of each batch), "
                          f"got {d.negative_fraction}")
    if any(not _is_number(s) or not 0.25 <= s <= 4 for s in t.multiscale):
        raise ConfigError(f"train.multiscale factors must lie in [0.25, 4]; got {t.multiscale}")
    if any(not _is_number(w) or not 0 <= w <= 1000 for w in t.deep_supervision):
        raise ConfigError(f"train.deep_supervision weights must lie in [0, 1000]; got "
                          f"{t.deep_supervision}")
    if t.min_lr > t.lr:
        raise ConfigError(f"train.min_lr ({t.min_lr}) must not exceed train.lr ({t.lr})")
    weights = t.loss.class_weights
    if weights is not None and (len(weights) != len(d.classes) or not all(
            _is_number(w) and math.isfinite(w) and w >= 0 for w in weights)):
        raise ConfigError(f"train.loss.class_weights must be {len(d.classes)} non-negative "
                          f"numbers, one per class; got {weights}")
    for name in t.loggers:
        if name not in LOGGERS:
            raise ConfigError(f"train.loggers: unknown logger '{name}'; choose from "
                              f"{', '.join(LOGGERS)}")
    names = t.loggers
    if len(set(names)) != len(names):
        raise ConfigError(f"train.loggers names a logger twice: {names}")


def _get(cfg, key: str):
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def in_range(value: float, low, high) -> bool:
    """`value` finite and within (low, high) as RANGES writes them."""
    if not math.isfinite(value):
        return False
    if low is not None:
        lo, open_ = (low[1], True) if isinstance(low, tuple) else (low, False)
        if value < lo or (open_ and value == lo):
            return False
    if high is not None:
        hi, open_ = (high[0], True) if isinstance(high, tuple) else (high, False)
        if value > hi or (open_ and value == hi):
            return False
    return True


def describe_range(low, high) -> str:
    parts = []
    if low is not None:
        parts.append(f"> {low[1]}" if isinstance(low, tuple) else f">= {low}")
    if high is not None:
        parts.append(f"< {high[0]}" if isinstance(high, tuple) else f"<= {high}")
    return " and ".join(parts)


def check_ranges(cfg, wanted=lambda key: True) -> None:
    """Every numeric field within its documented range, and the lists consistent with it."""
    for key, (low, high) in RANGES.items():
        if not wanted(key):
            continue
        value = _get(cfg, key)
        if value is None:  # an optional key left unset (train.time_limit: null)
            continue
        if not in_range(float(value), low, high):
            raise ConfigError(f"{key} must be {describe_range(low, high)}, got {value!r}")
    d = cfg.data
    if not all(isinstance(s, int) and not isinstance(s, bool) and 8 <= s <= MAX_SIDE
               for s in d.image_size):
        raise ConfigError(f"data.image_size must be [height, width], each an integer from 8 to "
                          f"{MAX_SIDE}; got {d.image_size}")
    names = d.classes
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"data.classes must be distinct non-empty names; got {names}")
    if len(names) > MAX_CLASSES:
        raise ConfigError(f"data.classes: at most {MAX_CLASSES} classes (masks are 8-bit)")
    if d.class_colors is not None and not all(
            isinstance(c, list) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c)
            for c in d.class_colors):
        raise ConfigError("data.class_colors must be [R, G, B] lists of integers 0..255")
    c = cfg.model.in_channels
    for key, values in (("data.mean", d.mean), ("data.std", d.std)):
        if values is None:
            continue
        if len(values) != c or not all(_is_number(v) and math.isfinite(v) for v in values):
            raise ConfigError(f"{key} must be {c} finite numbers (one per input channel, "
                              f"model.in_channels={c}); got {values}")
    if d.std is not None and min(d.std) <= 0:
        raise ConfigError(f"data.std must be positive (it divides the pixels); got {d.std}")
    ignore = d.ignore_index
    if ignore is not None and not (_is_int(ignore) and len(names) <= ignore <= 255):
        raise ConfigError(f"data.ignore_index must be a mask value that is not a class "
                          f"({len(names)}..255); got {ignore!r}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
