"""From a nested dict (a recipe, a YAML file, a run's config.json) to a `Config`.

Moved keys are migrated first, then pydantic checks every type; the first problem is reported
in one line that names the key: `model.encoder must be a string, got the list [1, 2]`, or for an
unknown key the nearest valid one. The key names, ranges and JSON Schema are read off the
schema's declarations, so nothing here repeats them.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools

from pydantic import TypeAdapter, ValidationError

from unetkit.config.schema import Config, ConfigError, migrate


@functools.cache
def _adapter() -> TypeAdapter:
    return TypeAdapter(Config)


def from_dict(values: dict) -> Config:
    try:
        return _adapter().validate_python(migrate(values or {}))
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: e["type"] not in UNKNOWN)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(_message(errors[0]) + more) from None


def json_schema() -> dict:
    """The JSON Schema of a configuration file: every key's type, default, range and meaning
    (`description`), one `$defs` entry per section. Editors validate YAML against it."""
    schema = _adapter().json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "unetkit configuration"
    return schema


def _sections(cls=Config, prefix: str = ""):
    """(dotted key, field) of every key, depth first; sections are keys too."""
    for name, f in cls.__pydantic_fields__.items():
        yield f"{prefix}{name}", f
        if dataclasses.is_dataclass(f.annotation):
            yield from _sections(f.annotation, f"{prefix}{name}.")


def all_keys() -> list[str]:
    """Every key that holds a value (not the sections), as `--set` names them."""
    return [k for k, f in _sections() if not dataclasses.is_dataclass(f.annotation)]


def ranges() -> dict[str, tuple]:
    """Key -> (lowest, highest) as declared in the schema, in `rules.RANGES`'s notation: a
    bound is inclusive, or open when written ("(", low) / (high, ")"); None: unbounded."""
    out = {}
    for k, f in _sections():
        b = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if not {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} & set(b):
            continue
        low = ("(", b["exclusiveMinimum"]) if "exclusiveMinimum" in b else b.get("minimum")
        high = (b["exclusiveMaximum"], ")") if "exclusiveMaximum" in b else b.get("maximum")
        out[k] = (low, high)
    return out


def unknown_key_message(path: str) -> str:
    """`unknown config key 'train.epoch'; did you mean 'train.epochs'?`"""
    *parent, name = path.split(".")
    prefix = ".".join(parent) + "." if parent else ""
    siblings = [k[len(prefix):] for k, _ in _sections() if k.startswith(prefix)
                and "." not in k[len(prefix):]]
    close = difflib.get_close_matches(path, all_keys(), n=1, cutoff=0.5)
    close = close or [prefix + c for c in difflib.get_close_matches(name, siblings, n=1,
                                                                    cutoff=0.5)]
    hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys here: {', '.join(siblings)}"
    return f"unknown config key '{path}'{hint}"


UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")  # a key no section has
# pydantic's error type -> what the value must be
EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "list_type": "a list", "dict_type": "a mapping", "dataclass_type": "a mapping",
    "dataclass_args_type": "a mapping",
}


def _message(error: dict) -> str:
    where = ""
    for part in error["loc"]:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    if error["type"] in UNKNOWN:
        return unknown_key_message(where)
    expected = EXPECTED.get(error["type"])
    if expected is None:
        return f"{where or 'config'}: {error['msg']}"
    return f"{where or 'config'} must be {expected}, got {_describe(error.get('input'))}"


def _describe(value) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, (list, tuple)):
        return f"the list {list(value)!r}"
    if isinstance(value, dict):
        return f"the mapping {value!r}"
    return repr(value)
