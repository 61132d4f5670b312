"""Where a data set's images and masks are, and how they pair: declared, or detected.

Detected, in this order (the first that fits is used, and `Layout.how` says which in one line):
- a CSV list of pairs given as the data "folder" (`--data pairs.csv`): `image` and `mask`
  columns (or img/input/x and label/gt/target/y ...), paths relative to the CSV;
- a named layout (`data.layout`, as recipes give it) whose folders are there;
- a folder of images beside a folder of masks with one of the usual names (images/imgs/img/
  inputs/x ... and masks/labels/gt/ground_truth/annotations/y ...), or a masks folder named
  after its images folder (train/ + train_gt/, train_masks/ ...);
- one flat folder holding images and their masks side by side (im.jpg + im_mask.png).
Masks pair with images by stem, any extension, plus a mask suffix: `data.mask_suffix` when it is
given, otherwise the suffix most masks share (none, _mask, _seg, _gt, _label ...), when one
suffix clearly wins. Nothing here knows any particular data set.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from unetkit.data.listing import LAYOUTS, DataError, Item, list_images, problem
from unetkit.data.tables import read_rows
from unetkit.io.images import IMAGE_EXTENSIONS

# Folder names (lower case, without _ - . and spaces) that say "images" and "masks".
IMAGE_WORDS = {"images", "image", "imgs", "img", "inputs", "input", "x", "rgb", "frames",
               "photos", "pictures", "originals", "raw", "data", "samples"}
MASK_WORDS = {"masks", "mask", "labels", "label", "gt", "groundtruth", "annotations",
              "annotation", "annot", "y", "segmentations", "segmentation", "seg", "segs",
              "targets", "target", "truth", "lbl", "labelmaps"}
# CSV column names for the image and the mask of a pair (compared the same way).
IMAGE_COLUMNS = ("image", "images", "img", "imagepath", "imagefile", "input", "x", "file",
                 "filename", "path")
MASK_COLUMNS = ("mask", "masks", "label", "labels", "gt", "maskpath", "maskfile", "target",
                "y", "segmentation", "annotation", "groundtruth")
SEPARATORS = "_-. "


def _word(name: str) -> str:
    return re.sub(r"[_\-. ]", "", name.lower())


@dataclass
class Layout:
    images: Path
    masks: Path
    suffix: str  # mask stem = image stem + suffix
    how: str  # what was chosen, in one line
    table: Path | None = None  # a CSV list of pairs instead of folders
    other_suffix: str | None = None  # a second suffix nearly as common: the choice is unsure

    @property
    def flat(self) -> bool:
        return self.table is None and self.images == self.masks


def data_base(root: Path) -> Path:
    """The folder relative paths of a data set are read from: the data folder, or the folder
    holding a CSV list of pairs."""
    return root if root.is_dir() else root.parent


def is_table(root: Path) -> bool:
    return root.suffix.lower() in (".csv", ".tsv", ".txt") and root.is_file()


# ---------------------------------------------------------------------------------------------
# Mask suffixes.


def suffix_counts(images: set[str], masks: list[str], flat: bool = False) -> Counter:
    """{suffix: masks it pairs with an image}: for each mask stem, the image stem it starts with
    (the longest) and what follows. In a flat folder a suffix starts with a separator and holds
    a letter, so that frame_10 is not frame_1's mask."""
    counts: Counter = Counter()
    for m in masks:
        if m in images and not flat:
            counts[""] += 1
            continue
        for i in range(len(m) - 1, 0, -1):
            if m[:i] in images:
                s = m[i:]
                if not flat or (s[0] in SEPARATORS and any(c.isalpha() for c in s)):
                    counts[s] += 1
                break
    return counts


def choose_suffix(counts: Counter) -> tuple[str | None, str | None]:
    """(the suffix most masks share, a second one nearly as common or None)."""
    ranked = counts.most_common(2)
    if not ranked:
        return None, None
    best, n = ranked[0]
    other = ranked[1][0] if len(ranked) > 1 and ranked[1][1] >= 0.5 * n else None
    return best, other


def _named(suffix: str) -> str:
    return f"<stem>{suffix}.*" if suffix else "the same stems"


# ---------------------------------------------------------------------------------------------
# Finding the layout.


def find_layout(root: Path, data_cfg) -> Layout:
    """The layout of a data folder (or CSV list), declared or detected; DataError if none fits,
    naming the `--set` that would declare it."""
    root = Path(root)
    if is_table(root):
        return Layout(root.parent, root.parent, "", f"a list of pairs ({root.name})", root)
    if not root.is_dir():
        raise DataError(f"{root}: no such data folder (give a folder of images and masks, or a "
                        "CSV list of pairs with image and mask columns)")
    if data_cfg.images or data_cfg.masks:
        if not (data_cfg.images and data_cfg.masks):
            raise DataError("give both data.images and data.masks (the sub-folders of images "
                            "and of masks)")
        return _with_suffix(root / data_cfg.images, root / data_cfg.masks, data_cfg,
                            "declared (data.images, data.masks)")
    note = ""
    if data_cfg.layout not in ("auto", "custom"):
        images, masks, _ = LAYOUTS[data_cfg.layout]
        if (root / images).is_dir() and (root / masks).is_dir():
            return _with_suffix(root / images, root / masks, data_cfg,
                                f"layout {data_cfg.layout}")
        note = f"; the {data_cfg.layout} layout's {images}/ + {masks}/ are not there"
    candidates = _folder_pairs(root)
    if len(candidates) > 1:  # keep the pairs whose files pair best
        rates = {c: _pair_rate(*c) for c in candidates}
        top = max(rates.values())
        candidates = [c for c in candidates if rates[c] == top]
    if len(candidates) == 1:
        images, masks = candidates[0]
        return _with_suffix(images, masks, data_cfg, f"detected{note}")
    if len(candidates) > 1:
        options = " or ".join(f"--set data.images={i.name} data.masks={m.name}"
                              for i, m in candidates[:3])
        raise DataError(f"{root}: several folder pairs could hold the images and masks; "
                        f"choose one: {options}",
                        (f"data.images={candidates[0][0].name}",
                         f"data.masks={candidates[0][1].name}"))
    flat = _flat_layout(root, data_cfg, note)
    if flat:
        return flat
    raise _no_layout(root)


def _with_suffix(images: Path, masks: Path, data_cfg, how: str) -> Layout:
    where = f"{images.name}/ + {masks.name}/"
    if data_cfg.mask_suffix:
        return Layout(images, masks, data_cfg.mask_suffix,
                      f"{where}, masks {_named(data_cfg.mask_suffix)} ({how})")
    suffix, other = "", None
    if images.is_dir() and masks.is_dir():
        counts = suffix_counts(set(list_images(images)), list(list_images(masks)))
        suffix, other = choose_suffix(counts)
        suffix = suffix or ""
    return Layout(images, masks, suffix, f"{where}, masks {_named(suffix)} ({how})",
                  other_suffix=other)


def _folder_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(images, masks) sub-folder pairs whose names say so."""
    dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    pairs = []
    for a in dirs:
        for b in dirs:
            wa, wb = _word(a.name), _word(b.name)
            if a == b or wa in MASK_WORDS:
                continue
            usual = wa in IMAGE_WORDS and wb in MASK_WORDS
            named = wb.startswith(wa) and wb[len(wa):] in MASK_WORDS  # train/ + train_gt/
            if usual or named:
                pairs.append((a, b))
    return pairs


def _pair_rate(images: Path, masks: Path) -> float:
    try:
        stems, mask_stems = set(list_images(images)), list(list_images(masks))
    except DataError:
        return 0.0
    counts = suffix_counts(stems, mask_stems)
    return max(counts.values(), default=0) / max(1, len(stems))


def _flat_layout(root: Path, data_cfg, note: str) -> Layout | None:
    """Images and masks side by side in one folder, masks marked by a suffix."""
    stems = [p.stem for p in root.iterdir() if p.is_file() and
             p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    if data_cfg.mask_suffix:
        suffix, other = data_cfg.mask_suffix, None
        how = "data.mask_suffix"
    else:
        suffix, other = choose_suffix(suffix_counts(set(stems), stems, flat=True))
        how = "detected"
    if not suffix or not any(s.endswith(suffix) for s in stems):
        return None
    return Layout(root, root, suffix, f"one folder, images with their masks "
                  f"{_named(suffix)} beside them ({how}{note})", other_suffix=other)


def _looks_like_masks(folder: Path) -> bool:
    """Whether a folder's first image has the few values of a mask (for the hint only)."""
    from PIL import Image

    from unetkit.io.images import open_image

    first = next(iter(list_images(folder).values()), None)
    try:
        img = open_image(first).convert("RGB").resize((64, 64), Image.NEAREST)
    except Exception:  # noqa: BLE001 - a guess for a hint; an unreadable file says nothing
        return False
    return len(img.getcolors(64 * 64)) <= 16


def _no_layout(root: Path) -> DataError:
    """The error for a folder whose layout is not recognised, with the `--set` that declares it
    when two sub-folders hold images."""
    with_images = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
                   and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in d.iterdir())]
    if len(with_images) == 2:
        a, b = with_images
        images, masks = (b, a) if _looks_like_masks(a) and not _looks_like_masks(b) else (a, b)
        fix = (f"data.images={images.name}", f"data.masks={masks.name}")
        return DataError(f"{root}: no known layout; its sub-folders {a.name}/ and {b.name}/ hold "
                         f"images: declare them: --set {' '.join(fix)}", fix)
    found = ", ".join(f"{d.name}/" for d in with_images[:5]) or "none"
    return DataError(f"{root}: no known layout (images/ + masks/, imgs/ + gt/, train/ + "
                     f"train_masks/, ..., a flat folder of im.jpg + im_mask.png, or a CSV list "
                     f"of pairs); sub-folders with images: {found}; name them with --set "
                     "data.images=DIR data.masks=DIR")


# ---------------------------------------------------------------------------------------------
# Pairing.


def pair_items(root: Path, data_cfg, require_masks: bool | None = None
               ) -> tuple[list[Item], list[str]]:
    """Pair images with masks. Returns the pairs and the problems found (unpaired files); the
    first problem carries the `--set` that pairs them when another suffix would.
    An image without a mask is a problem unless data.missing_masks is "negative" (mask None)."""
    if require_masks is None:
        require_masks = getattr(data_cfg, "missing_masks", "error") != "negative"
    layout = find_layout(Path(root), data_cfg)
    if layout.table is not None:
        return table_items(layout.table, require_masks)
    images = list_images(layout.images)
    if layout.flat:
        suffix = layout.suffix
        masks = {s: p for s, p in images.items() if s.endswith(suffix) and s[:-len(suffix)]
                 in images}
        images = {s: p for s, p in images.items() if s not in masks}
    else:
        masks = list_images(layout.masks) if layout.masks.is_dir() else {}
    problems = []
    if not images:
        problems.append(f"{layout.images}: no images (.jpg, .png, ...) in this folder")
    suffix, items, unpaired = layout.suffix, [], []
    for stem, path in images.items():
        mask = masks.get(stem + suffix)
        if mask is None and require_masks:
            unpaired.append(f"{path}: no mask '{stem + suffix}.*' in {layout.masks}; add it or "
                            "remove the image")
            continue
        items.append(Item(stem, path, mask))
    hint = _suffix_hint(layout, images, masks, len(items))
    if hint:
        problems.append(hint)
    problems += unpaired
    for stem, path in masks.items():
        if not stem.endswith(suffix) or stem[: len(stem) - len(suffix)] not in images:
            image_stem = stem[: len(stem) - len(suffix)] if suffix else stem
            problems.append(f"{path}: mask with no image '{image_stem}.*' "
                            f"in {layout.images}; add the image or remove the mask")
    return items, problems


def _suffix_hint(layout: Layout, images: dict, masks: dict, paired: int):
    """A problem naming the `--set data.mask_suffix=...` that pairs more images than the suffix
    in use, or the choice between two suffixes nearly as common; None when neither applies."""
    if layout.flat:
        if layout.other_suffix:
            return problem(f"{layout.images}: masks are marked by two suffixes, "
                           f"'{layout.suffix}' and '{layout.other_suffix}'; choose one: --set "
                           f"data.mask_suffix={layout.suffix}",
                           (f"data.mask_suffix={layout.suffix}",))
        return None
    best, _ = choose_suffix(suffix_counts(set(images), list(masks)))
    if best is None or best == layout.suffix:
        if layout.other_suffix:
            return problem(f"{layout.masks}: masks pair with images by two suffixes, "
                           f"'{layout.suffix}' and '{layout.other_suffix}'; choose one: --set "
                           f"data.mask_suffix={layout.suffix}",
                           (f"data.mask_suffix={layout.suffix}",))
        return None
    better = sum(1 for s in images if s + best in masks)
    if better <= paired:
        return None
    return problem(f"{layout.masks}: masks are named {_named(best)}, not "
                   f"{_named(layout.suffix)}: {better} of {len(images)} images pair with "
                   f"--set data.mask_suffix={best}", (f"data.mask_suffix={best}",))


def table_items(path: Path, require_masks: bool = True) -> tuple[list[Item], list[str]]:
    """The pairs of a CSV list (image and mask columns, paths relative to the CSV or absolute),
    and the problems found: missing files, an image listed twice."""
    header, rows = read_rows(path)
    words = [_word(h) for h in header]
    at_image = next((words.index(c) for c in IMAGE_COLUMNS if c in words), None)
    at_mask = next((words.index(c) for c in MASK_COLUMNS if c in words), None)
    if at_image is None or at_mask is None or at_image == at_mask:
        raise DataError(f"{path}: a list of pairs needs an image and a mask column (columns: "
                        f"{header or None}); name them in a header row: image,mask")
    base, items, problems, seen = path.parent, [], [], {}
    for line, row in rows:
        cells = row + [""] * (max(at_image, at_mask) + 1 - len(row))
        image_text, mask_text = cells[at_image].strip(), cells[at_mask].strip()
        if not image_text:
            continue
        image = base / Path(image_text).expanduser()
        mask = base / Path(mask_text).expanduser() if mask_text else None
        if not image.is_file():
            problems.append(f"{path}, line {line}: no image file {image}")
            continue
        if mask is None and require_masks:
            problems.append(f"{path}, line {line}: no mask for {image_text}; add it or remove "
                            "the row")
            continue
        if mask is not None and not mask.is_file():
            problems.append(f"{path}, line {line}: no mask file {mask}")
            continue
        if image.stem in seen:
            problems.append(f"{path}, line {line}: a second image named '{image.stem}' (line "
                            f"{seen[image.stem]}); image names (stems) must be unique")
            continue
        seen[image.stem] = line
        items.append(Item(image.stem, image, mask))
    if not rows:
        problems.append(f"{path}: a header and no rows; one row per image: image,mask")
    return items, problems
