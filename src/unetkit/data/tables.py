"""CSV tables given by the user: a split's group table (`data.split.group_table`, e.g. Carvana's
metadata.csv) and `evaluate --sequences`' frame, sequence table. Both are untrusted input and
are read here, by one reader, within bounds (so is a list of image,mask pairs, see `layouts`):

- at most `MAX_TABLE_BYTES` (50 MB, refused from the file's size before a byte is read) and
  fields of at most `MAX_FIELD_CHARS` characters;
- UTF-8 text (a byte-order mark is allowed), with a header row and at least one row below it;
- every key (the first column) on one row only: a frame in two sequences, or a car under two
  makes, is a contradiction, not a choice to make silently.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from unetkit.data.listing import DataError

MAX_TABLE_BYTES = 50_000_000
MAX_FIELD_CHARS = 10_000  # a frame or group name; longer fields are refused (csv stops at 131,072)


def read_rows(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, row)]) of a CSV with a header, read within the bounds above;
    blank lines are left out. Raises DataError naming the file and the fix."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TABLE_BYTES:
            raise DataError(f"{path}: {size / 1e6:,.0f} MB; a table is at most "
                            f"{MAX_TABLE_BYTES / 1e6:.0f} MB (one row per image)")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 CSV table (byte {exc.start} cannot be decoded); "
                        "save it as UTF-8 text with a header row") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder, not a CSV table") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None) or []
        rows = []
        for row in reader:
            if not row:
                continue
            if max(map(len, row)) > MAX_FIELD_CHARS:
                raise csv.Error(f"a field of {max(map(len, row)):,} characters")
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: not a readable CSV table ({exc}; "
                        f"fields are at most {MAX_FIELD_CHARS:,} characters)") from None
    return header, rows


def read_table(path: str | Path, column: str) -> list[tuple[str, str]]:
    """[(first column's value, `column`'s value)] of a CSV with a header, in the file's order;
    rows whose `column` is empty are left out. Raises DataError naming the file and the fix."""
    header, all_rows = read_rows(path)
    if not header or column not in header:
        raise DataError(f"{path}: no column '{column}' (columns: {header or None}); give a CSV "
                        f"with a header row naming '{column}'")
    key_at, value_at = 0, header.index(column)
    rows = [(line, row[key_at], row[value_at]) for line, row in all_rows
            if len(row) > max(key_at, value_at) and row[value_at] != ""]
    if not rows:
        raise DataError(f"{path}: a header and no rows with a '{column}'; the table maps each "
                        f"{header[0]} to its {column}, one row each")
    lines: dict[str, list[int]] = {}
    for line, key, _ in rows:
        lines.setdefault(key, []).append(line)
    repeated = {k: v for k, v in lines.items() if len(v) > 1}
    if repeated:
        first = "; ".join(f"'{k}' (rows {', '.join(map(str, v))})"
                          for k, v in list(repeated.items())[:5])
        raise DataError(f"{path}: {len(repeated)} {header[0]} value(s) on more than one row: "
                        f"{first}; keep one row each")
    return [(key, value) for _, key, value in rows]
