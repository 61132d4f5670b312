"""The configuration schema: pydantic checks every type, in one line naming the key; the JSON
Schema documents every key."""

from __future__ import annotations

import pytest

from conftest import run_cli
from unetkit import config as config_mod
from unetkit.config import names
from unetkit.config.build import all_keys
from unetkit.config.rules import RANGES


@pytest.mark.parametrize("override, message", [
    ("model.encoder=[1, 2]", "model.encoder must be a string, got the list [1, 2]"),
    ("data.split.group_by=[1]", "data.split.group_by must be a string, got the list [1]"),
    ("data.negatives=[1, 2]", "data.negatives[0] must be a string, got 1"),
    ("train.augment=[5]", "train.augment[0] must be a mapping, got 5"),
    ("train.epochs=true", "train.epochs must be an integer, got True"),
    ("train.lr=[1]", "train.lr must be a number, got the list [1]"),
    ("data.image_size=[64, 'x']", "data.image_size[1] must be an integer, got 'x'"),
])
def test_wrong_types_are_one_line_errors_naming_the_key(tmp_path, synthetic_data, override,
                                                        message):
    with pytest.raises(config_mod.ConfigError) as caught:
        config_mod.load("demo", overrides=[override])
    assert str(caught.value).startswith(message), str(caught.value)
    proc = run_cli("train", "--recipe", "demo", "--data", str(synthetic_data), "--out",
                   str(tmp_path / "run"), "--set", override, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()  # refused before any work


def test_a_number_where_a_name_belongs_is_the_name_and_text_numbers_are_numbers(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("name: 2024\ntrain:\n  lr: 1e-4\ndata:\n  mean: ['0.5', 1, 2e-1]\n"
                    "  std: [1, 1, 1]\n")
    cfg = config_mod.load(file=str(file))
    assert cfg.name == "2024" and cfg.train.lr == 1e-4 and cfg.data.mean == [0.5, 1.0, 0.2]
    assert all(isinstance(v, float) for v in cfg.data.mean)
    file.write_text("train:\n  loss: 3\n")
    with pytest.raises(config_mod.ConfigError, match="^train.loss must be a mapping, got 3$"):
        config_mod.load(file=str(file))


def _leaves(schema: dict) -> dict[str, dict]:
    """Dotted key -> its JSON Schema, following the sections' $refs."""
    out = {}

    def walk(node: dict, prefix: str) -> None:
        for name, prop in node["properties"].items():
            ref = prop.get("$ref")
            if ref:
                walk(schema["$defs"][ref.split("/")[-1]], f"{prefix}{name}.")
            else:
                out[f"{prefix}{name}"] = prop
    walk(schema, "")
    return out


def test_json_schema_documents_every_key():
    schema = config_mod.json_schema()
    leaves = _leaves(schema)
    assert sorted(leaves) == sorted(all_keys()) and len(leaves) > 70
    defaults = config_mod.Config().to_dict()
    for key, prop in leaves.items():
        assert len(prop.get("description", "")) > 10, f"{key} has no description"
        assert "type" in prop or "anyOf" in prop, key
        value = defaults
        for part in key.split("."):
            value = value[part]
        assert prop["default"] == value, key
    # ranges and allowed names are stated in the schema, and the rules read them from there
    assert leaves["train.lr"]["exclusiveMinimum"] == 0 and leaves["train.lr"]["maximum"] == 10
    assert RANGES["train.lr"] == (("(", 0), 10)
    assert RANGES["data.split.val_fraction"] == (0, (1, ")"))
    for key, allowed in names.ALLOWED.items():
        assert leaves[key]["enum"] == list(allowed), key
    assert schema["$defs"]["TrainConfig"]["additionalProperties"] is False  # unknown keys
    for key in RANGES:
        low, high = RANGES[key]
        assert ("minimum" in leaves[key] or "exclusiveMinimum" in leaves[key]) == \
            (low is not None), key
