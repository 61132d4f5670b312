"""What a configuration must satisfy: allowed names, cross-field rules, the ranges its values
must lie in; and YAML read without alias expansion.

`validate(cfg)` (also `config.validate`) runs `check_ranges(cfg)`, so the same rules hold when
`train` starts and when a run folder is loaded for `predict`, `evaluate`, `export`, `submit` or
`serve`: a value that would allocate without bound, divide by zero, or silently give empty masks
is refused with a message naming the key, before any data is read or any model is built.
"""

from __future__ import annotations

import math

import yaml

MAX_PARAMETERS = 500_000_000  # 2 GB of float32 weights: 15x the classic U-Net (31 M)
MAX_SIDE = 8192  # data.image_size: each side of the training size
MAX_CLASSES = 255  # masks are uint8 class indices (and 255 is a usual ignore value)
MAX_YAML_BYTES = 1_000_000

# key: (lowest, highest) allowed, inclusive unless marked open ("(" / ")" beside it); None: no
# bound on that side. Fractions and probabilities exclude 1: a threshold of 1 marks nothing.
RANGES: dict[str, tuple] = {
    "model.in_channels": (1, 16),
    "model.base_channels": (1, 1024),
    "model.depth": (1, 8),
    "model.head_channels": (0, 4096),
    "model.freeze_encoder_epochs": (0, None),
    "data.mask_threshold": (1, 255),
    "data.split.val_fraction": (0, (1, ")")),
    "data.split.test_fraction": (0, (1, ")")),
    "train.epochs": (1, 1_000_000),
    "train.batch_size": (1, 4096),
    "train.eval_batch_size": (1, 4096),
    "train.lr": (("(", 0), 10),
    "train.weight_decay": (0, 1),
    "train.warmup_epochs": (0, None),
    "train.plateau_factor": (("(", 0), (1, ")")),
    "train.plateau_patience": (0, None),
    "train.min_lr": (0, 10),
    "train.samples": (0, 1000),
    "train.threshold": (("(", 0), (1, ")")),
    "train.loss.bce": (0, 1000),
    "train.loss.dice": (0, 1000),
    "train.loss.structure": (0, 1000),
    "train.loss.structure_kernel": (1, 255),
    "train.ema": (0, (1, ")")),  # a decay; 0 turns the average off
    "train.grad_clip": (0, None),  # 0 turns clipping off
    "train.log_images_every": (0, None),
    "data.negative_val_fraction": (0, (1, ")")),
}


def allowed_values() -> dict[str, tuple[str, ...]]:
    """Config key -> its allowed names, each from the registry of the module that uses them."""
    from .compiling import COMPILE_MODES
    from .data import LAYOUT_NAMES
    from .images import MASK_ENCODINGS
    from .metrics import MONITORS
    from .models import ARCHS
    from .negatives import MISSING_MASKS
    from .numerics import POLICIES
    from .optim import OPTIMIZERS, SCHEDULES

    return {"model.arch": ARCHS, "data.mask_encoding": MASK_ENCODINGS,
            "data.layout": LAYOUT_NAMES, "train.optimizer": tuple(OPTIMIZERS),
            "train.schedule": SCHEDULES, "train.nan_policy": POLICIES,
            "train.monitor": MONITORS, "train.compile_mode": COMPILE_MODES,
            "data.missing_masks": MISSING_MASKS}


def validate(cfg) -> None:
    """Checks that need more than one field, so a bad run fails before any data is read."""
    from .config import ConfigError

    m, d, t = cfg.model, cfg.data, cfg.train
    for key, allowed in allowed_values().items():
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
    if t.epochs < 1 or t.batch_size < 1:
        raise ConfigError("train.epochs and train.batch_size must be at least 1")
    if bool(d.split.group_table) != bool(d.split.group_column):
        raise ConfigError("give both data.split.group_table and data.split.group_column, "
                          "or neither")
    if (d.mean is None) != (d.std is None):
        raise ConfigError("give both data.mean and data.std, or neither")
    from .augment import validate as validate_augment
    from .loggers import check as check_loggers  # logger names, and their packages installed

    validate_augment(t.augment, d.image_size)
    check_ranges(cfg)  # every number within its range, the model's size within bounds
    check_loggers(t.loggers)


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


def check_ranges(cfg) -> None:
    """Every numeric field within its documented range, and the lists consistent with it."""
    from .config import ConfigError

    for key, (low, high) in RANGES.items():
        value = _get(cfg, key)
        if not in_range(float(value), low, high):
            raise ConfigError(f"{key} must be {describe_range(low, high)}, got {value!r}")
    d, t = cfg.data, cfg.train
    if d.split.val_fraction + d.split.test_fraction >= 1:
        raise ConfigError("data.split.val_fraction + data.split.test_fraction must be below 1 "
                          "(something must be left to train on)")
    from .losses import TERMS

    if sum(getattr(t.loss, name) for name in TERMS) <= 0:
        raise ConfigError(f"train.loss: at least one of {', '.join(TERMS)} must have a positive "
                          "weight")
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
    weights = t.loss.class_weights
    if weights is not None and (len(weights) != len(names) or not all(
            _is_number(w) and math.isfinite(w) and w >= 0 for w in weights)):
        raise ConfigError(f"train.loss.class_weights must be {len(names)} non-negative numbers, "
                          f"one per class; got {weights}")
    ignore = d.ignore_index
    if ignore is not None and not (_is_int(ignore) and len(names) <= ignore <= 255):
        raise ConfigError(f"data.ignore_index must be a mask value that is not a class "
                          f"({len(names)}..255); got {ignore!r}")
    if cfg.model.arch == "unet":
        check_model_size(cfg)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def unet_parameters(cfg) -> int:
    """The classic U-Net's parameter count, from its configuration alone (nothing allocated)."""
    m = cfg.model
    widths = [m.base_channels * 2**i for i in range(m.depth + 1)]

    def block(cin: int, cout: int) -> int:  # two 3x3 convs without bias, two BatchNorms
        return 9 * cin * cout + 9 * cout * cout + 4 * cout

    total = block(m.in_channels, widths[0])
    total += sum(block(widths[i], widths[i + 1]) for i in range(m.depth))
    for i in range(m.depth):
        cin, half = widths[i + 1], widths[i + 1] // 2
        total += (cin * half + half) if m.bilinear else (4 * cin * half + half)
        total += block(half + widths[i], widths[i])
    head_in = widths[0]
    if m.head_channels > 0:
        total += 9 * head_in * m.head_channels + 2 * m.head_channels
        head_in = m.head_channels
    return total + head_in * cfg.out_channels + cfg.out_channels


def check_model_size(cfg, parameters: int | None = None) -> int:
    from .config import ConfigError

    n = unet_parameters(cfg) if parameters is None else parameters
    if n > MAX_PARAMETERS:
        raise ConfigError(f"this model would have {n / 1e6:,.0f} M parameters "
                          f"({4 * n / 2**30:,.1f} GiB), more than unetkit builds "
                          f"({MAX_PARAMETERS / 1e6:,.0f} M); lower model.base_channels or "
                          "model.depth")
    return n


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.safe_load without anchors and aliases: a few hundred bytes of nested aliases (a
    "billion laughs" file) would otherwise expand to gigabytes. unetkit configs never need
    them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in unetkit configs; write the "
                "value out", event.start_mark)
        return super().compose_node(parent, index)


def safe_yaml(text: str):
    """YAML values as yaml.safe_load gives them, refusing aliases and texts over 1 MB."""
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"{len(text):,} characters; a unetkit config is under "
                             f"{MAX_YAML_BYTES:,}")
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
