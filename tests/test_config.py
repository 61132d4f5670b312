"""Configuration: recipes load, --set values parse, mistakes fail with a useful message."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from unetkit import config as config_mod
from unetkit.config.schema import ConfigError
from unetkit.config.sources import load, parse_value


@pytest.mark.parametrize("name", config_mod.recipe_names())
def test_every_recipe_loads_and_round_trips(name):
    cfg = load(name)
    assert cfg.name == name
    assert cfg.description, f"recipe {name} has no description"
    # config.yaml of a run is to_yaml(cfg): reading it back gives the same configuration.
    again = config_mod.from_dict(yaml.safe_load(config_mod.to_yaml(cfg)))
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)


def test_shipped_recipes():
    assert {"kvasir-binary", "demo"} <= set(config_mod.recipe_names())
    k = load("kvasir-binary")
    # The binary write-up's setting: 256x256, 20 epochs, batch 8, AdamW, BCE + Dice, the
    # classic 64-wide, 4-level U-Net, Kvasir-SEG's official split.
    assert (k.data.image_size, k.train.epochs, k.train.batch_size, k.train.optimizer) == \
        ([256, 256], 20, 8, "adamw")
    assert (k.train.loss.bce, k.train.loss.dice) == (1.0, 1.0)
    assert (k.model.arch, k.model.base_channels, k.model.depth) == ("unet", 64, 4)
    assert k.data.split.train == "splits/medico2020-train.txt"
    assert k.train.lr == 5e-5 and isinstance(k.train.lr, float)


def test_defaults_without_recipe():
    cfg = load()
    assert cfg.num_classes == 2 and cfg.out_channels == 1  # binary: one logit
    cfg = load(overrides=["data.mask_encoding=index", "data.classes=['a','b','c']"])
    assert cfg.out_channels == 3


@pytest.mark.parametrize("text, value", [
    ("5", 5), ("-2", -2), ("0.5", 0.5), ("1e-4", 1e-4), ("3.0e-3", 3e-3),
    ("[32, 48]", [32, 48]), ("[0.5,0.5,0.5]", [0.5, 0.5, 0.5]),
    ("true", True), ("False", False), ("TRUE", True), ("null", None), ("None", None),
    ("sgd", "sgd"), ("splits/train.txt", "splits/train.txt"), ("/abs/path", "/abs/path"),
    ("'quoted'", "quoted"), ("[background, polyp]", ["background", "polyp"]),
    ("[{'op': 'hflip', 'p': 0.5}]", [{"op": "hflip", "p": 0.5}]),
    ("[{op: vflip, p: 0.5}]", [{"op": "vflip", "p": 0.5}]),
])
def test_set_values_parse(text, value):
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_set_overrides_reach_the_config():
    cfg = load("demo", overrides=[
        "train.epochs=3", "train.lr=1e-4", "data.image_size=[32,48]", "model.bilinear=true",
        "train.optimizer=sgd", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]",
        "train.loss.class_weights=[1, 2]",
        "data.classes=[background, lesion]", "train.weight_decay=1", "name=123",
    ])
    assert cfg.train.epochs == 3 and cfg.train.lr == 1e-4
    assert cfg.data.image_size == [32, 48] and cfg.model.bilinear is True
    assert cfg.train.optimizer == "sgd" and cfg.data.mean == [0.5, 0.5, 0.5]
    assert cfg.train.loss.class_weights == [1, 2] and cfg.data.classes == ["background", "lesion"]
    assert cfg.train.weight_decay == 1.0 and isinstance(cfg.train.weight_decay, float)
    assert cfg.name == "123"
    assert cfg.model.depth == load("demo").model.depth  # untouched fields keep the recipe's value


def test_yaml_1e4_in_a_config_file(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e-4 without a dot as the string "1e-4"; it must still be a number.
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  lr: 1e-4\n  min_lr: 1e-7\nmodel:\n  depth: 2\n")
    assert yaml.safe_load(file.read_text())["train"]["lr"] == "1e-4"
    cfg = load(file=str(file))
    assert cfg.train.lr == 1e-4 and cfg.train.min_lr == 1e-7 and cfg.model.depth == 2
    # recipe, then file, then --set: later wins
    cfg = load("demo", file=str(file), overrides=["model.depth=1"])
    assert cfg.model.depth == 1 and cfg.train.lr == 1e-4 and cfg.model.base_channels == 16


@pytest.mark.parametrize("key, meant", [
    ("train.epoch", "train.epochs"), ("model.base_channel", "model.base_channels"),
    ("modle.depth", "model.depth"), ("data.image_szie", "data.image_size"),
    ("train.loss.dise", "train.loss.dice"), ("data.split.val_frac", "data.split.val_fraction"),
])
def test_unknown_key_suggests_the_nearest(key, meant):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'; did you mean '{meant}'"):
        load(overrides=[f"{key}=1"])


def test_unknown_key_in_a_file(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match="'train.epoch'; did you mean 'train.epochs'"):
        load(file=str(file))


@pytest.mark.parametrize("override, message", [
    ("model.arch=vnet", "model.arch must be one of unet, timm-unet; got 'vnet'"),
    ("train.optimizer=lamb", "train.optimizer must be one of adamw, adam, sgd; got 'lamb'"),
    ("train.schedule=step", "train.schedule must be one of cosine"),
    ("data.mask_encoding=rgb", "data.mask_encoding must be one of binary, color, index"),
    ("data.layout=coco", "data.layout must be one of auto"),
    ("train.epochs=ten", "train.epochs must be an integer, got 'ten'"),
    ("train.epochs=2.5", "train.epochs must be an integer"),
    ("train.lr=fast", "train.lr must be a number, got 'fast'"),
    ("model.bilinear=yes", "model.bilinear must be true or false"),
    ("data.image_size=256", "data.image_size must be a list"),
    ("data.image_size=[256]", r"data.image_size must be \[height, width\]"),
    ("model.depth=0", "model.depth must be at least 1"),
    ("data.classes=[background]", "at least two names"),
    ("data.classes=[a, b, c]", "'binary' needs exactly two classes"),
    ("train.epochs", "--set expects key=value"),
])
def test_bad_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load(overrides=[override])


def test_unknown_recipe_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no recipe 'kvasir'.*did you mean 'kvasir-binary'"):
        load("kvasir")
    with pytest.raises(ConfigError, match="no such config file"):
        load(file=str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(file=str(bad))


def test_every_allowed_name_has_an_implementation_and_every_implementation_a_name():
    """The allowed names live in config.names (below every engine); each implementing module's
    table holds exactly those names, so neither can grow without the other."""
    from unetkit.config import names
    from unetkit.data.folders import LAYOUTS
    from unetkit.training import losses, optim
    from unetkit.training.loggers import LOGGERS

    assert tuple(optim.OPTIMIZERS) == names.OPTIMIZERS
    assert tuple(losses.TERMS) == names.LOSS_TERMS
    assert tuple(LOGGERS) == names.LOGGERS
    assert tuple(LAYOUTS) == names.DATA_LAYOUTS
    assert config_mod.allowed_values()["train.schedule"] == names.SCHEDULES
    with pytest.raises(ConfigError, match="train.monitor must be one of"):
        load(overrides=["train.monitor=f1"])
    for schedule in names.SCHEDULES:  # each allowed schedule builds
        cfg = load(overrides=[f"train.schedule={schedule}"])
        opt = optim.make_optimizer(cfg, torch.nn.Linear(1, 1))
        assert optim.make_scheduler(cfg, opt, 10) is not None
