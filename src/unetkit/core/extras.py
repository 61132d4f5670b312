"""Optional extras: the one way unetkit imports a package that only some users install.

Every such import goes through `require`, so a missing package always ends the same way: a
`MissingExtra` (an ImportError) whose message names what needed it and the one command that
installs it, e.g. "reading videos needs av: pip install 'unetkit[video]'".
"""

from __future__ import annotations

import importlib
import importlib.util


class MissingExtra(ImportError):
    """An optional package that is not installed; the message says what to pip install."""


def install_hint(extra: str) -> str:
    return f"pip install 'unetkit[{extra}]'"


def require(module: str, extra: str, what: str):
    """Import and return `module`, or raise MissingExtra: "{what} needs {module}: pip install
    'unetkit[{extra}]'"."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs {module}: {install_hint(extra)}") from None


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None
        return False
