"""Every verb that reads masks or maps meets every wrong-input case of tests/contracts.py:
decoded as declared (the clean copy's numbers) or refused in a line that names the input."""

from __future__ import annotations

import shutil

import pytest

from conftest import run_cli
from contracts import CASES, EITHER, FIXTURE_RUN, REFUSED, SAME, VERBS, clean_data

RUNNABLE = [v for v in VERBS if not v.reads_none]
PAIRS = [(v, c) for v in RUNNABLE for c in CASES
         if c.kind in v.kinds and (c.kind != "twice" or v.twice) and (c.kind == "twice" or v.args)]


@pytest.fixture(scope="module")
def clean(synthetic_data, tmp_path_factory):
    return clean_data(synthetic_data, tmp_path_factory.mktemp("clean") / "data")


def _work(clean, tmp_path, case=None):
    work = tmp_path / "data"
    shutil.copytree(clean, work)
    shutil.copytree(FIXTURE_RUN, tmp_path / "run")  # beside the data: outputs go there too
    if case is not None and case.make is not None:
        case.make(work)
    return work


@pytest.fixture(scope="module")
def reference(clean, tmp_path_factory):
    """Each verb's numbers on the clean copy."""
    out = {}
    for verb in RUNNABLE:
        if verb.args is None:
            continue
        work = _work(clean, tmp_path_factory.mktemp(verb.name))
        proc = run_cli(*verb.args(work), "--quiet", check=False)
        assert proc.returncode == 0, (verb.name, proc.stdout, proc.stderr)
        out[verb.name] = verb.numbers(work, proc)
    return out


@pytest.mark.parametrize("verb, case", PAIRS, ids=[f"{v.name}: {c.name}" for v, c in PAIRS])
def test_a_verb_decodes_wrong_input_as_declared_or_refuses_it(verb, case, clean, reference,
                                                              tmp_path):
    work = _work(clean, tmp_path, case)
    argv = verb.twice(work) if case.kind == "twice" else verb.args(work)
    proc = run_cli(*argv, "--quiet", check=False)
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    expect = verb.expect.get(case.name, case.expect)
    if proc.returncode != 0:
        assert expect in (REFUSED, EITHER), f"refused a decodable input: {text}"
        assert str(tmp_path) in text or "--" in text, f"the message names no input: {text}"
        if verb.name != "check-data":  # check-data lists every problem, one a line
            assert proc.stderr.strip(), text
        return
    assert expect in (SAME, EITHER), f"accepted ({proc.returncode}) what it must refuse: {text}"
    if expect == SAME:
        assert verb.numbers(work, proc) == reference[verb.name]


def test_every_verb_that_takes_masks_maps_or_data_is_registered():
    """A new verb with --masks, --maps, --data (or a positional maps/data folder) must be added
    to tests/contracts.py: with its cases, or with why it reads none."""
    from unetkit.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    taking = set()
    for name, p in sub.choices.items():
        for action in p._actions:
            names = set(action.option_strings) | {action.dest}
            if names & {"--masks", "--maps", "--data", "maps", "data", "--label-masks"}:
                taking.add(name)
    registered = {v.name for v in VERBS}
    assert taking - registered == set(), f"not in tests/contracts.py VERBS: {taking - registered}"
    assert {"evaluate", "score", "audit", "report", "calibrate", "import-labels"} <= registered
    assert all(v.args or v.twice or v.reads_none for v in VERBS)
