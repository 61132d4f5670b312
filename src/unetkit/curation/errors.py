"""The one error of label import and export."""

from __future__ import annotations

from unetkit.data.folders import DataError


class LabelError(DataError):
    """A label file, mask or folder that cannot be used; the message names it and the fix.

    A `DataError` (so a `ValueError`): the command line reports it as it reports data errors."""
