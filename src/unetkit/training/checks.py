"""What training checks of a configuration beyond `config.validate`, before any data is read.

These rules need the training engine: the augmentation ops and their parameters, the loggers'
packages installed, and the model's size counted on the model itself. They are training's
alone: a run folder loaded for prediction never runs them (a run trained with W&B predicts on a
machine without it).
"""

from __future__ import annotations

from unetkit.models.size import check_model_size
from unetkit.training.augment import validate as validate_augment
from unetkit.training.loggers import check as check_loggers


def check_training(cfg) -> None:
    """Raise ConfigError, naming the key and the fix, for what would fail once training runs."""
    validate_augment(cfg.train.augment, cfg.data.image_size)
    check_loggers(cfg.train.loggers)
    check_model_size(cfg)
