"""What training checks of a configuration beyond `config.validate`, before any data is read.

These rules need the training engine: the augmentation ops and their parameters, the loggers'
packages installed, and the model's size counted on the model itself. They are training's
alone: a run folder loaded for prediction never runs them (a run trained with W&B predicts on a
machine without it).
"""

from __future__ import annotations

from unetkit.config.schema import ConfigError
from unetkit.models.size import check_model_size
from unetkit.training.augment import validate as validate_augment
from unetkit.training.loggers import check as check_loggers


def check_training(cfg) -> None:
    """Raise ConfigError, naming the key and the fix, for what would fail once training runs."""
    validate_augment(cfg.train.augment, cfg.data.image_size)
    check_loggers(cfg.train.loggers)
    if cfg.model.arch == "timm-unet":
        check_encoder(cfg.model.encoder)
    check_model_size(cfg)


def check_encoder(name: str) -> None:
    """model.encoder must be an architecture timm has (a `hf-hub:` name is timm's to fetch)."""
    import timm

    if ":" in str(name):
        return
    if not isinstance(name, str) or not timm.is_model(name):
        family = "".join(c for c in str(name) if c.isalpha())[:8] or "resnet"
        raise ConfigError(f"model.encoder '{name}' is not an architecture timm knows; list the "
                          f"names with `python -c \"import timm; print(timm.list_models("
                          f"'{family}*'))\"`, then --set model.encoder=NAME")
