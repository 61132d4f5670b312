"""Where a configuration comes from: the packaged recipes, YAML files and `--set key=value`
overrides (parsed with `ast.literal_eval`, never `eval`), merged in one order and validated.

YAML is read without alias expansion and with a size limit: a config file is untrusted input.
"""

from __future__ import annotations

import ast
import difflib
import re
import sys
from pathlib import Path
from typing import Any

import yaml

# Checks that need more than one field, and the allowed names, live beside the ranges.
from unetkit.config.build import all_keys, from_dict, unknown_key_message
from unetkit.config.rules import validate
from unetkit.config.schema import MOVED, Config, ConfigError, renamed_notes
from unetkit.core.files import read_limited

RECIPE_DIR = Path(__file__).parent / "recipes"


def _merge(base: dict, changes: dict) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_value(text: str) -> Any:
    """`--set` values: Python/YAML literals (numbers, lists, true/false, null), else a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if text.strip()[:1] in ("[", "{"):  # YAML's flow style, as in recipes: [background, polyp]
        try:
            return safe_yaml(text)
        except yaml.YAMLError:
            pass
    return text


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` overrides to a nested dict (unknown keys fail in `from_dict`)."""
    values = dict(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, text = item.split("=", 1)
        key = MOVED.get(key.strip(), key.strip())
        if key not in all_keys():
            raise ConfigError(unknown_key_message(key))
        _merge_into(values, key.split("."), parse_value(text))
    return values


def _merge_into(values: dict, parts: list[str], value: Any) -> None:
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    path = RECIPE_DIR / f"{name}.yaml"
    if not path.exists():
        close = difflib.get_close_matches(name, recipe_names(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"no recipe '{name}': {hint}`unetkit recipes` lists them all")
    return path


def read_yaml(path: str | Path, inside: str | Path | None = None) -> dict:
    """A YAML config file, read with a bound; `inside`: the run folder it must stay in (a run's
    config.yaml is untrusted: no FIFO, device or link out of the folder)."""
    path = Path(path)
    try:
        if inside is not None:
            data = read_limited(path, MAX_YAML_BYTES, "the config.yaml training wrote",
                                inside=inside, error=ConfigError)
        else:  # the user's own file, which may be a pipe (--config <(...))
            with path.open("rb") as f:
                data = f.read(MAX_YAML_BYTES + 1)
        values = safe_yaml(data.decode()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config file must be a YAML mapping")
    return values


def load(recipe: str | None = None, file: str | None = None, overrides: list[str] = (),
         data_root: str | None = None, inside: str | Path | None = None) -> Config:
    """Build the configuration of a run: defaults <- recipe or file <- --data <- --set.

    `recipe`: a shipped recipe's name (`recipe_names()`); `file`: a YAML file (both: the file
    changes the recipe); `data_root`: the data folder (data.root); `overrides`: "KEY=VALUE"
    strings as `--set` takes them, e.g. ["train.epochs=5", "model.encoder=resnet34"].
    Returns a validated `Config`; `ConfigError` names a wrong key or value. Train it with
    `unetkit.Trainer(cfg, run_dir).fit()` (see docs/python-api.md)."""
    values: dict = {}
    if recipe:
        values = read_yaml(recipe_path(recipe))
        values.setdefault("name", recipe)
    if file:
        values = _merge(values, read_yaml(file, inside))
    if data_root:
        _merge_into(values, ["data", "root"], str(data_root))
    values = apply_overrides(values, list(overrides))
    for line in renamed_notes(values):  # the run folders' own configs migrate silently
        print(f"unetkit: note: {line}", file=sys.stderr)
    mark_description(values, list(overrides))
    cfg = from_dict(values)
    validate(cfg)
    return cfg


CHANGED = re.compile(r" \[changed with --set: (.*)\]$")


def mark_description(values: dict, overrides: list[str]) -> None:
    """A recipe's description speaks of its own values ("256x256, 20 epochs"); once `--set`
    changes any, the description says which: "... [changed with --set: train.epochs=2]" (a
    resumed run's earlier changes kept, a key changed again shown with its new value). A
    description given with --set is taken as it is."""
    text = values.get("description")
    changes = dict(item.split("=", 1) for item in overrides if "=" in item)
    changes = {k.strip(): v.strip() for k, v in changes.items()}
    if not isinstance(text, str) or not text or not changes or "description" in changes:
        return
    earlier = CHANGED.search(text)
    if earlier:
        text = text[:earlier.start()]
        changes = {**dict(c.split("=", 1) for c in earlier.group(1).split("; ") if "=" in c),
                   **changes}
    listed = "; ".join(f"{k}={v}" for k, v in changes.items())
    values["description"] = f"{text} [changed with --set: {listed}]"


def for_training(recipe: str | None = None, file: str | None = None,
                 overrides: list[str] = (), data_root: str | None = None,
                 resume: str | Path | None = None) -> Config:
    """The configuration of `unetkit train`, new or resumed, in one order: defaults <- recipe,
    file or (resuming) the run's own config.yaml <- --data <- --set."""
    if resume is not None:
        if recipe or file:
            raise ConfigError("--resume continues a run with its own config.yaml; drop --recipe "
                              "and --config (change fields with --set)")
        return load(file=str(Path(resume) / "config.yaml"), overrides=overrides,
                    data_root=data_root, inside=resume)
    if not (recipe or file):
        raise ConfigError("give --recipe NAME or --config FILE (or --resume RUN_DIR)")
    return load(recipe, file, overrides, data_root)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)


MAX_YAML_BYTES = 1_000_000


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
