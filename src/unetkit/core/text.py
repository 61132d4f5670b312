"""Words in messages: one rule for counts, so that no message says "1 problems"."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`count` with `noun` in the right number: "1 problem", "0 problems", "2 problems";
    `many` for a plural that is not noun + "s" ("1 class", "3 classes")."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
