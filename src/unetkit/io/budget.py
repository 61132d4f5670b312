"""The pixel budget every image reader keeps, and the error they all raise."""

from __future__ import annotations

# The pixel budget. An image above MAX_IMAGE_PIXELS (e.g. 8000 x 5000, more than any camera of
# the data sets unetkit serves) is refused from its header, before a pixel is decoded; Pillow's
# own bomb guard (89 M pixels) is further up. Prediction forms its batches by pixels: the images
# held at once (with their probability maps at full size) add up to at most MAX_BATCH_PIXELS.
# With both, `predict` stays under about 1.5 GB whatever its inputs (see the README).
MAX_IMAGE_PIXELS = 40_000_000


MAX_BATCH_PIXELS = 40_000_000


class ImageError(ValueError):
    """An image or mask that cannot be used; the message names the file and the fix."""
