"""The package's shape: layers that import only downwards, no import circles, short modules, and
run folders written before the layout still load and predict the same.

The layer rule is stated once, in pyproject.toml's import-linter contract (which `make lint`
runs with `lint-imports`); this test reads the same table and checks every import statement of
the package against it, top-level and inside functions alike, so the rule holds in the test
suite too.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

from conftest import REPO, run_cli

PACKAGE = REPO / "src" / "unetkit"
FIXTURES = Path(__file__).parent / "fixtures"
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Module -> the unetkit modules it imports (a name imported from a package counts as the
    submodule when there is one, else as the package)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    found = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}:{node.lineno}: relative import; write it absolute"
                if node.module and node.module.split(".")[0] == "unetkit":
                    for alias in node.names:
                        sub = f"{node.module}.{alias.name}"
                        targets.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "unetkit"}
        found[name] = targets - {name}
    return found


def layers() -> list[list[str]]:
    """The contract's layers, top first; each a list of sibling packages."""
    table = tomllib.loads((REPO / "pyproject.toml").read_text())
    (contract,) = table["tool"]["importlinter"]["contracts"]
    return [[p.strip() for p in layer.split("|")] for layer in contract["layers"]]


def layer_of(module: str, table: list[list[str]]) -> tuple[int, str] | None:
    for level, siblings in enumerate(table):
        for package in siblings:
            if module == package or module.startswith(package + "."):
                return level, package
    return None


def violations(graph: dict[str, set[str]], table: list[list[str]]) -> list[str]:
    """Imports that go up a layer, or sideways between sibling packages of one layer."""
    found = []
    for module, targets in graph.items():
        if module in ("unetkit", "unetkit.__main__"):  # the public API and `python -m unetkit`
            continue
        here = layer_of(module, table)
        assert here is not None, f"{module} is in no layer of pyproject.toml's contract"
        for target in targets:
            there = layer_of(target, table)
            assert there is not None, f"{module} imports {target}, which is in no layer"
            if there[0] < here[0] or (there[0] == here[0] and there[1] != here[1]):
                found.append(f"{module} -> {target}")
    return sorted(found)


def test_every_module_sits_in_a_layer_and_imports_only_downwards():
    found = violations(imports(), layers())
    assert not found, "imports that go up or sideways:\n" + "\n".join(found)


def test_the_layer_check_finds_upward_and_sideways_imports():
    graph = {"unetkit.io.images": {"unetkit.training.fit", "unetkit.core.files"},
             "unetkit.clinical.video": {"unetkit.training.losses", "unetkit.evaluation.metrics"},
             "unetkit.cli.main": {"unetkit.deploy.serve"}}
    assert violations(graph, layers()) == ["unetkit.clinical.video -> unetkit.training.losses",
                                           "unetkit.io.images -> unetkit.training.fit"]


def test_no_import_circles_between_modules():
    graph = imports()
    graph = {m: {t for t in ts if t in graph and t != "unetkit"} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_no_module_is_longer_than_one_sitting():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def requirement_names(specs) -> set[str]:
    import re

    return {re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].lower().replace("-", "_") for s in specs}


def test_no_module_keeps_an_empty_section():
    """Three blank lines in a row are where code was moved out and its section left behind."""
    empty = []
    for path in PACKAGE.rglob("*.py"):
        blank = 0
        for number, line in enumerate(path.read_text().splitlines(), 1):
            blank = blank + 1 if not line.strip() else 0
            if blank == 3:
                empty.append(f"{path.relative_to(PACKAGE)}:{number}")
    assert not empty, f"empty sections: {empty}"


def test_no_extra_pins_what_a_dependency_already_brings():
    """`hf://` models need no extra (timm, a core dependency, brings huggingface_hub) and
    `unetkit[serve]` lists Gradio alone (Gradio brings its client)."""
    from importlib.metadata import PackageNotFoundError, requires

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "hub" not in extras
    assert "huggingface_hub" not in requirement_names(s for e in extras.values() for s in e)
    assert requirement_names(extras["serve"]) == {"gradio"}
    for package, brings in (("timm", "huggingface_hub"), ("gradio", "gradio_client")):
        try:
            assert brings in requirement_names(requires(package) or [])
        except PackageNotFoundError:
            pass  # an optional package not installed here
    assert "timm" in requirement_names(project["dependencies"])


def test_the_public_names_are_where_users_look():
    import unetkit
    from unetkit import Predictor, TimmUNet, Trainer, UNet, build_model, load_model

    assert {"UNet", "TimmUNet", "build_model", "load_model", "Predictor", "Trainer"} <= set(
        unetkit.__all__)
    assert callable(load_model) and callable(build_model)
    assert all(isinstance(c, type) for c in (Predictor, TimmUNet, Trainer, UNet))


def test_a_run_folder_written_before_the_layout_predicts_the_same(tmp_path):
    """tests/fixtures/run-0.1.0 was written by unetkit 0.1.0 (see fixtures/README.md): it loads,
    its operating point applies, and `predict` writes the masks, probability maps and summary
    that version wrote, but for one change made since on purpose: the network's 32 px logits
    are brought to the image's 48 px before the sigmoid, where 0.1.0 resized the probabilities
    (inference/predictor.py says why). That moves boundary pixels of the maps by a few grey
    levels and can flip a mask pixel whose probability sits at the threshold; nothing else."""
    expected = FIXTURES / "run-0.1.0-predicted"
    images = sorted((expected / "images").glob("*.jpg"))
    out = tmp_path / "pred"
    run_cli("predict", str(FIXTURES / "run-0.1.0"), *map(str, images), "--out", str(out),
            "--probs", "--quiet")
    for old in sorted(expected.glob("*.png")):
        new = np.asarray(Image.open(out / old.name)).astype(int)
        ref = np.asarray(Image.open(old)).astype(int)
        if old.name.endswith("_prob.png"):  # measured: at most 4/255, 1-3 % of pixels over 1
            diff = np.abs(new - ref)
            assert diff.max() <= 6 and (diff > 1).mean() < 0.05, (old.name, diff.max())
        else:
            assert (new == ref).mean() > 0.999, old.name
    got = json.loads((out / "summary.json").read_text())
    want = json.loads((expected / "summary.json").read_text())
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert {k: v for k, v in g.items() if k != "classes"} == \
            {k: v for k, v in w.items() if k != "classes"}
        assert g["classes"].keys() == w["classes"].keys()
        for name, stats in w["classes"].items():  # a flipped pixel: the area moves by one
            assert abs(g["classes"][name]["area_px"] - stats["area_px"]) <= 1, g["image"]
            assert {k: g["classes"][name][k] for k in ("bbox_xyxy", "components")} == \
                {k: stats[k] for k in ("bbox_xyxy", "components")}, g["image"]


def test_prediction_checks_only_what_prediction_uses(tmp_path, monkeypatch):
    """A run trained with W&B, on a machine without it, and a training-only value this version
    refuses (train.lr): it still loads and predicts. Its integrity checks stay: a NaN weight
    or a model value out of range is still refused."""
    from unetkit.runs.check import run_config
    from unetkit.runs.folder import RunError
    from unetkit.runs.loading import load_model

    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "run-0.1.0", run)
    card = json.loads((run / "config.json").read_text())
    card["config"]["train"].update(loggers=["wandb"], lr=1000.0, epochs=0)
    (run / "config.json").write_text(json.dumps(card))
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    assert load_model(run).unetkit_config.train.loggers == ["wandb"]
    images = sorted((FIXTURES / "run-0.1.0-predicted" / "images").glob("*.jpg"))
    proc = run_cli("predict", str(run), str(images[0]), "--out", str(tmp_path / "p"), "--quiet",
                   check=False)
    assert proc.returncode == 0, proc.stderr
    card["config"]["model"]["depth"] = 0  # what prediction uses is still checked
    (run / "config.json").write_text(json.dumps(card))
    with pytest.raises(RunError, match="model.depth"):
        run_config(run)
