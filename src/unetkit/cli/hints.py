"""The command line a fix leads to: the one the user typed, with the `--set` changes added.

An error that knows its fix (`DataError.fix`, the `--set KEY=VALUE` changes) is followed by the
whole command to run next, so the user's --recipe, --config, --data and other --set values are
kept and only the keys being fixed change.
"""

from __future__ import annotations

import shlex


def command_with(argv: list[str], fix: tuple[str, ...] | list[str]) -> str:
    """`unetkit ARGV` with `--set FIX...` added and earlier values of the same keys dropped."""
    keys = {f.split("=", 1)[0].strip() for f in fix}
    kept: list[str] = []
    in_set = False
    for token in argv:
        if token.startswith("--set="):
            if token[len("--set="):].split("=", 1)[0].strip() not in keys:
                kept.append(token)
            in_set = False
            continue
        if token == "--set":
            in_set = True
        elif token.startswith("-"):
            in_set = False
        elif in_set and "=" in token and token.split("=", 1)[0].strip() in keys:
            continue
        kept.append(token)
    # a --set whose values were all replaced is left out
    kept = [t for i, t in enumerate(kept)
            if t != "--set" or (i + 1 < len(kept) and not kept[i + 1].startswith("-"))]
    return shlex.join(["unetkit", *kept, "--set", *fix])
