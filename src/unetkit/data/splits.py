"""Splits: which items train, validate and test. From split files, a seeded random split, or
grouped by a table (frames of one video never straddle two splits), and k folds.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from unetkit.core.text import plural
from unetkit.data.folders import DataError, Item, pair_items, read_stems
from unetkit.data.layouts import data_base
from unetkit.data.tables import read_table


def split_items(items: list[Item], root: Path, split_cfg) -> dict[str, list[Item]]:
    """{'train', 'val', 'test'} -> items, from split files or a seeded random (group) split."""
    by_name = {it.name: it for it in items}

    def from_file(name: str) -> list[Item]:
        path = split_path(root, name)
        if not path.is_file():
            raise missing_split(split_cfg, path)
        stems = read_stems(path)
        missing = [s for s in stems if s not in by_name]
        if missing:
            raise DataError(f"{path}: {plural(len(missing), 'stem')} with no image+mask pair in "
                            f"{root} "
                            f"(first: {missing[:3]}); run `unetkit check-data {root}`")
        return [by_name[s] for s in stems]

    if split_cfg.val and not split_cfg.train:
        raise DataError("data.split.val needs data.split.train (the training stems) too")
    if split_cfg.train and not split_cfg.val:
        # A training file alone (e.g. PraNet's 900 Kvasir-SEG stems): validation is a seeded
        # random val_fraction of it, and every other item is the test set, never seen.
        train = from_file(split_cfg.train)
        names = {i.name for i in train}
        parts = random_split(train, split_cfg.val_fraction, 0.0, split_cfg.seed,
                             split_cfg.group_by, group_table(root, split_cfg))
        return {"train": parts["train"], "val": parts["val"],
                "test": [i for i in items if i.name not in names]}
    if split_cfg.train:
        train, val = from_file(split_cfg.train), from_file(split_cfg.val)
        overlap = {i.name for i in train} & {i.name for i in val}
        if overlap:
            raise DataError(f"{split_cfg.val}: {plural(len(overlap), 'stem')} also in the training "
                            f"split (first: {sorted(overlap)[:3]})")
        used = {i.name for i in train + val}
        return {"train": train, "val": val, "test": [i for i in items if i.name not in used]}
    return random_split(items, split_cfg.val_fraction, split_cfg.test_fraction, split_cfg.seed,
                        split_cfg.group_by, group_table(root, split_cfg))


def split_path(root: Path, name: str) -> Path:
    """A split file named by the configuration: relative to the data folder, or absolute."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else data_base(root) / path


def missing_split(split_cfg, path: Path) -> DataError:
    """A split file that is not there, with the `--set` that splits without the files."""
    fix = tuple(f"data.split.{k}=null" for k in ("train", "val") if getattr(split_cfg, k))
    return DataError(f"{path}: no such split file (data.split names it, relative to the data "
                     f"folder); give it, or split at random (data.split.val_fraction): --set "
                     f"{' '.join(fix)}", fix)


def group_table(root: Path, split_cfg) -> dict[str, str] | None:
    """data.split.group_table read (relative to the data root, or absolute), or None when none
    is named. A named table that is not there is an error: splitting without it would put
    frames of one group on both sides."""
    if not split_cfg.group_table:
        return None
    path = split_path(root, split_cfg.group_table)
    if not path.is_file():
        fix = ("data.split.group_table=null", "data.split.group_column=null")
        raise DataError(f"data.split.group_table: no file {path} (a relative path is read from "
                        f"the data root); fix the name, or split without it: --set "
                        f"{' '.join(fix)}", fix)
    return read_group_table(path, split_cfg.group_column)


def read_group_table(path: Path, column: str) -> dict[str, str]:
    """{first column's value: `column`'s value} from a CSV (see `tables`), e.g. Carvana's
    metadata.csv id -> make."""
    return dict(read_table(path, column))


def group_items(items: list[Item], group_by: str | None = None,
                table: dict[str, str] | None = None) -> dict[str, list[Item]]:
    """{group: its items, by name}: `group_by`'s first regex group, mapped through `table`
    (a name the regex does not match is its own group)."""
    groups: dict[str, list[Item]] = {}
    for it in sorted(items, key=lambda i: i.name):
        key = it.name
        if group_by:
            match = re.search(group_by, it.name)
            key = match.group(1) if match else it.name
        if table:
            key = table.get(key, key)  # a car missing from the table stays its own group
        groups.setdefault(key, []).append(it)
    return groups


def random_split(items: list[Item], val_fraction: float, test_fraction: float, seed: int,
                 group_by: str | None = None, table: dict[str, str] | None = None
                 ) -> dict[str, list[Item]]:
    """A seeded random split. With `group_by` (a regex whose first group names the group, e.g.
    Carvana's car id) whole groups go to one side, so no group appears in two splits. `table`
    maps those groups to larger ones (Carvana: car id -> make), which are then kept whole."""
    groups = group_items(items, group_by, table)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n = len(keys)
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n_val + n_test >= n:
        raise DataError(f"{n} items (or groups) are too few to split off {val_fraction:.0%} "
                        f"validation and {test_fraction:.0%} test data")
    pick = lambda ks: [it for k in ks for it in groups[k]]  # noqa: E731
    return {"val": pick(keys[:n_val]), "test": pick(keys[n_val:n_val + n_test]),
            "train": pick(keys[n_val + n_test:])}


def resolve_split(cfg, root: Path, name: str) -> list[Item]:
    """The items of one split by name (train, val, test, all) or a file of stems."""
    items, problems = pair_items(root, cfg.data)
    if not items:
        raise DataError(problems[0] if problems else f"{root}: no image/mask pairs")
    if name == "all":
        return items
    if name in ("train", "val", "test"):
        chosen = split_items(items, root, cfg.data.split)[name]
        if not chosen:
            raise DataError(f"the '{name}' split of {root} is empty")
        return chosen
    by_name = {it.name: it for it in items}
    path = Path(name)
    stems = read_stems(path if path.is_absolute() or path.exists() else data_base(root) / name)
    missing = [s for s in stems if s not in by_name]
    if missing:
        raise DataError(f"{name}: stems with no image+mask pair in {root}: {missing[:3]}")
    return [by_name[s] for s in stems]


def fold_splits(items: list[Item], k: int, seed: int = 0, group_by: str | None = None,
                table: dict[str, str] | None = None) -> list[list[Item]]:
    """K disjoint validation sets covering `items`, whole groups each, of near-equal size:
    groups in a seeded random order, the largest first, each to the fold with fewest items."""
    groups = group_items(items, group_by, table)
    if k < 2:
        raise DataError(f"--folds needs at least 2 folds, got {k}")
    if len(groups) < k:
        raise DataError(f"{len(groups)} groups of images are too few for {k} folds")
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    keys.sort(key=lambda g: -len(groups[g]))  # stable: equal sizes keep the random order
    folds: list[list[Item]] = [[] for _ in range(k)]
    for key in keys:
        min(folds, key=len).extend(groups[key])
    return [sorted(f, key=lambda it: it.name) for f in folds]


def parse_data_split(text: str) -> tuple[Path, str | None]:
    """`DIR` or `DIR:SPLIT` (the command line's --data) -> (DIR, SPLIT or None). A folder whose
    own name holds a colon stays whole, and so does a drive letter (C:\\data)."""
    if Path(text).is_dir() or ":" not in text:
        return Path(text), None
    folder, split = text.rsplit(":", 1)
    if len(folder) <= 1 or split.startswith(("\\", "/")):
        return Path(text), None
    return Path(folder), split or None
