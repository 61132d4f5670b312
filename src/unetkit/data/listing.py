"""What every data module shares: the error with its fix, the items, listing a folder's images
and reading a split file. `folders` is the public face of these; `layouts` builds on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unetkit.core.reading import refuse_special
from unetkit.io.images import IMAGE_EXTENSIONS

# data.layout names -> (images folder, masks folder, mask stem suffix), as recipes name them.
LAYOUTS = {
    "kvasir": ("images", "masks", ""),
    "neopolyp": ("train", "train_gt", ""),
    "carvana": ("train", "train_masks", "_mask"),
    "isbi": ("image", "label", ""),
}


class DataError(ValueError):
    """A data folder that cannot be used as configured; the message says how to fix it.
    `fix`: the `--set KEY=VALUE` changes that fix it, for the command line the CLI rebuilds."""

    def __init__(self, message: str, fix: tuple[str, ...] | list[str] = ()):
        super().__init__(message)
        self.fix = tuple(fix)


class Problem(str):
    """One problem found in a data set (its text), with the `--set` changes that fix it."""

    fix: tuple[str, ...] = ()


def problem(text: str, fix: tuple[str, ...] | list[str] = ()) -> Problem:
    p = Problem(text)
    p.fix = tuple(fix)
    return p


@dataclass
class Item:
    name: str  # the image's stem
    image: Path
    mask: Path | None


def list_images(folder: Path) -> dict[str, Path]:
    """stem -> path for the image files of a folder (other files are not images and are skipped)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        hidden = path.name.startswith(".")
        if not hidden and not path.is_dir():  # a FIFO or device among the images: refused
            refuse_special(path, "an image file", DataError)
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not hidden:
            if path.stem in found:
                raise DataError(f"{path}: two files share the stem '{path.stem}' "
                                f"({found[path.stem].name}); keep one")
            found[path.stem] = path
    if not found:
        _refuse_nested_images(folder)
    return found


def _refuse_nested_images(folder: Path) -> None:
    """A folder with no images of its own whose subfolders hold some: one level is read, so
    say which folders to give instead of reading nothing."""
    nested = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")
              and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in d.iterdir() if f.is_file())]
    if nested:
        names = ", ".join(f"{d.name}/" for d in nested[:5]) + (" ..." if len(nested) > 5 else "")
        raise DataError(f"{folder}: no images in the folder itself, but its subfolders hold some "
                        f"({names}); unetkit reads one folder level: give those folders")


MAX_STEMS_BYTES = 64 << 20  # a million stems of 60 characters


def read_stems(path: Path) -> list[str]:
    """The stems of a file of image names, one a line (a split, an audit's flagged.txt)."""
    from unetkit.core.files import read_limited

    what = "a text file of image stems, one a line"
    try:
        text = read_limited(path, MAX_STEMS_BYTES, what, error=DataError).decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such split file (one image stem per line)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8, "
                        f"{what}") from None
    return [Path(line.strip()).stem for line in text.splitlines() if line.strip()]
