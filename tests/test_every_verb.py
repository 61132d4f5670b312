"""Every verb of the command line is tested through the command itself, not only around it.

A verb's exit codes and one-line errors live in `unetkit.cli.main.main`; a test that calls the
verb's library function or builds its argument object by hand never sees them. So every verb the
argument parser knows must appear in at least one test that goes through the command: in process
(`run_cli`), in a memory-capped process (`capped`), as a server (`start_server`) or as
`python -m unetkit VERB`. A verb added later without such a test fails here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from unetkit.cli.main import build_parser

TESTS = Path(__file__).resolve().parent
# The ways a test runs the command: run_cli("VERB", capped("VERB", start_server(["VERB",
# and a subprocess of [..., "-m", "unetkit", "VERB", ...].
THROUGH_MAIN = r'(?:run_cli\(|capped\(|start_server\(\[|"-m", "unetkit", )\s*"{verb}"'


def verbs() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_verb_has_a_test_through_the_command():
    others = [p for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name]
    text = "\n".join(p.read_text() for p in others)
    untested = [v for v in verbs() if not re.search(THROUGH_MAIN.format(verb=re.escape(v)), text)]
    assert not untested, f"verbs with no test through unetkit's main: {untested}"


def test_the_scan_sees_the_forms_it_claims():
    pattern = THROUGH_MAIN.format(verb="score")
    for call in ('run_cli("score", ', 'capped("score", ', 'start_server(["score", ',
                 '[sys.executable, "-m", "unetkit", "score", '):
        assert re.search(pattern, call), call
    assert not re.search(pattern, 'cli_score.run(args)  # "score"')
