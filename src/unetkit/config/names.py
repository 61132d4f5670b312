"""The names a configuration may give, one table per key.

They live here, below every module that implements them, so that validating a configuration
imports no engine (models, data, training). Each implementing module reads its key's names
from this table and holds one implementation per name; `tests/test_config.py` checks that the
two agree, so a name cannot be allowed here without code behind it, or the reverse.
"""

ARCHS = ("unet", "timm-unet")  # model.arch (models.unet)
MASK_ENCODINGS = ("binary", "color", "index")  # data.mask_encoding (io.images.MaskDecoder)
DATA_LAYOUTS = ("kvasir", "neopolyp", "carvana", "isbi")  # detected folder layouts (data.folders)
LAYOUT_NAMES = ("auto", *DATA_LAYOUTS, "custom")  # data.layout: detect, name one, or declare
MISSING_MASKS = ("error", "negative")  # data.missing_masks (data.negatives)
OPTIMIZERS = ("adamw", "adam", "sgd")  # train.optimizer (training.optim)
SCHEDULES = ("cosine", "linear", "constant", "plateau")  # train.schedule (training.optim)
POLICIES = ("stop", "skip")  # train.nan_policy (training.numerics)
MONITORS = ("mDice_point", "mIoU_point", "dice", "iou")  # train.monitor (evaluation.metrics)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs",
                 "max-autotune")  # train.compile_mode (training.compiling)
LOSS_TERMS = ("bce", "dice", "structure")  # train.loss.<term> weights (training.losses)
LOGGERS = ("tensorboard", "mlflow", "wandb")  # train.loggers (training.loggers)

# key -> its allowed names
ALLOWED = {"model.arch": ARCHS, "data.mask_encoding": MASK_ENCODINGS,
           "data.layout": LAYOUT_NAMES, "data.missing_masks": MISSING_MASKS,
           "train.optimizer": OPTIMIZERS, "train.schedule": SCHEDULES,
           "train.nan_policy": POLICIES, "train.monitor": MONITORS,
           "train.compile_mode": COMPILE_MODES}
