"""Reading untrusted files: regular files only, within a byte bound, inside their folder.

A FIFO, a device or a socket among the inputs (a FIFO named `x.png`, a link to /dev/zero) is
refused with a one-line error before it is opened for reading: opening a FIFO waits for a
writer forever and /dev/zero never ends. `special_kind` names what a path is; `open_regular`
opens a file without blocking and checks what it opened (so a file swapped for a FIFO after
the check is refused too); `read_limited` reads one with a bound.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a folder"))


_last: list[str] = []  # the file opened last: named when memory runs out (see cli.main)


def last_read() -> str | None:
    """The file `open_regular` opened last in this process, if any."""
    return _last[-1] if _last else None


def _kind(mode: int) -> str | None:
    return next((name for test, name in _KINDS if test(mode)), None)


def special_kind(path: str | Path) -> str | None:
    """What `path` is when it is not a regular file (links followed): "a FIFO (named pipe)",
    "a character device", ... or None for a regular file or a path that does not exist."""
    try:
        return _kind(os.stat(path).st_mode)
    except OSError:
        return None


def refuse_special(path: str | Path, what: str, error: type[Exception] = ValueError) -> None:
    """Raise `error` if `path` is a FIFO, device, socket (or folder) instead of `what`."""
    kind = special_kind(path)
    if kind is not None:
        raise error(f"{path}: {kind}, not a regular file; unetkit never reads from one: "
                    f"replace it with {what}, or move it out of the folder")


def open_regular(path: str | Path, what: str, error: type[Exception] = ValueError) -> BinaryIO:
    """`path` opened for binary reading if it is a regular file, else `error` naming it (a
    missing file: FileNotFoundError "PATH: no such file")."""
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror or exc}); replace it with "
                    f"{what}") from None
    kind = _kind(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise error(f"{path}: {kind}, not a regular file; unetkit never reads from one: "
                    f"replace it with {what}")
    os.set_blocking(fd, True)
    _last[:] = [str(path)]
    return os.fdopen(fd, "rb")


def read_limited(path: str | Path, max_bytes: int, what: str, inside: str | Path | None = None,
                 error: type[Exception] = ValueError,
                 too_large: str = "replace it with the file unetkit wrote") -> bytes:
    """The bytes of `path` (`what` it should be, e.g. "a unetkit config.json"), read with a
    bound: more than `max_bytes` (the message ends with the fix `too_large`), a FIFO, device or
    folder, or (given `inside`, the folder it belongs to) a symbolic link that leads out of
    `inside` raise `error` naming the file. A file that does not exist raises
    FileNotFoundError, for the caller to word."""
    path = Path(path)
    real = path.resolve()
    if inside is not None and not real.is_relative_to(Path(inside).resolve()):
        raise error(f"{path}: a link to {real}, outside the folder {inside}; replace the link "
                    f"with a copy of the file ({what})")
    with open_regular(real, what, error) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise error(f"{path}: over {max_bytes:,} bytes, too large for {what}; {too_large}")
    return data


def read_text_limited(path: str | Path, max_bytes: int, what: str,
                      error: type[Exception] = ValueError) -> str:
    """`read_limited`, decoded as UTF-8 (a byte-order mark allowed), or `error` naming the
    file and the encoding to save it in."""
    data = read_limited(path, max_bytes, what, error=error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                    f"({what})") from None


def written_by_unetkit(path: str | Path) -> bool:
    """Whether a file is one unetkit wrote (so an export may replace it without --force): a
    JSON object naming `unetkit_version` (sidecars, model cards) or a model card README.md."""
    path = Path(path)
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > 1_000_000:
            return False
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".md":
        return text.startswith("---\nlibrary_name: unetkit\n")
    import json

    try:
        values = json.loads(text)
    except ValueError:
        return False
    return isinstance(values, dict) and "unetkit_version" in values
