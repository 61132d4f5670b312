"""The documentation's generated references cover the code: every verb and option of the
command line, every configuration key with its meaning (docs/gen_reference.py, which `make
docs` runs), and the hand-written extras tables match pyproject.toml."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import tomllib

from unetkit.cli.main import build_parser
from unetkit.config import Config

REPO = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "docs/gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _keys(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in values.items():
        if isinstance(value, dict) and value and name != "augment":
            keys += _keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_cli_reference_names_every_verb_and_option():
    page = _generator().cli_page()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for verb, parser in sub.choices.items():
        assert f"\n## {verb}\n" in page, verb
        section = page.split(f"\n## {verb}\n")[1].split("\n## ")[0]
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in section, f"{verb} {option}"


def test_config_reference_names_every_key_with_its_default():
    page = _generator().config_page()
    keys = _keys(Config().to_dict())
    assert len(keys) > 50
    # | key | type | range | default | meaning |, pipes inside a cell escaped
    rows = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in page.splitlines() if line.startswith("| `")]
    cells = {row[0].strip("`"): row for row in rows}
    for key in keys:
        assert key in cells, key
        assert len(cells[key]) == 5 and cells[key][1] and cells[key][4], cells[key]
    assert "| `train.epochs` | `int` | [1, 1000000] | `20` |" in page


def test_extras_tables_list_every_extra():
    """The README's and Getting started's extras tables are written by hand: they must name
    exactly the extras pyproject.toml declares (the test-only ones may share a row)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    core = [re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in project["dependencies"]]
    for page, skip in (("README.md", {"test", "serve-test", "bench"}),
                       ("docs/getting-started.md", set())):
        text = (REPO / page).read_text()
        table = text[text.index("| extra |"):].split("\n\n")[0]  # the table under that header
        rows = table.splitlines()[2:]
        named = {name for row in rows for name in re.findall(r"`([a-z0-9-]+)`",
                                                              row.split("|")[1])}
        assert named == extras - skip, f"{page}: {sorted(named ^ (extras - skip))}"
    core_row = next(line for line in (REPO / "README.md").read_text().splitlines()
                    if line.startswith("| (none) |")).lower()
    assert [name for name in core if name not in core_row] == []
