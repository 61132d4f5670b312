"""TIFF variants written with tifffile: what Pillow cannot open is read, the 16-bit rule is one
rule for every image, stacks are refused, masks keep their values; and CVC-ColonDB's original
TIFFs read as the data set's JPEG/PNG copies."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import real_data
from unetkit.io.budget import ImageError
from unetkit.io.images import MaskDecoder, read_image, read_mask

tifffile = pytest.importorskip("tifffile")

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def test_rgb_as_three_minisblack_samples_beyond_pillow(tmp_path):
    path = tmp_path / "minisblack.tiff"
    tifffile.imwrite(path, RGB, photometric="minisblack", planarconfig="contig")
    try:  # Pillow either refuses the file or reads something that is not the RGB image
        pillow = np.asarray(Image.open(path).convert("RGB"))
    except (OSError, ValueError):
        pillow = None
    assert pillow is None or not np.array_equal(pillow, RGB)
    assert np.array_equal(read_image(path), RGB)


def test_planar_rgb_and_plain_rgb(tmp_path):
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(RGB, -1, 0), photometric="rgb",
                     planarconfig="separate")
    tifffile.imwrite(tmp_path / "rgb.tif", RGB, photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "planar.tif"), RGB)
    assert np.array_equal(read_image(tmp_path / "rgb.tif"), RGB)


def test_sixteen_bit_scaling_is_one_rule_not_each_images_maximum(tmp_path):
    dim = np.full((8, 8), 0x1234, np.uint16)  # a dark frame: its own maximum is 0x1234
    bright = dim.copy()
    bright[0, 0] = 0xFFFF
    tifffile.imwrite(tmp_path / "dim.tiff", dim)
    tifffile.imwrite(tmp_path / "bright.tiff", bright)
    a, b = read_image(tmp_path / "dim.tiff"), read_image(tmp_path / "bright.tiff")
    assert (a[1:, 1:] == 0x12).all() and (b[1:, 1:] == 0x12).all()  # same value, same grey
    assert (b[0, 0] == 0xFF).all()
    rgb16 = RGB.astype(np.uint16) * 257  # 0..255 stretched onto 0..65535
    tifffile.imwrite(tmp_path / "rgb16.tiff", rgb16, photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "rgb16.tiff"), RGB)


def test_multipage_stack_is_refused_and_preview_pages_are_skipped(tmp_path):
    stack = tmp_path / "stack.tiff"
    tifffile.imwrite(stack, np.stack([RGB, RGB]), photometric="rgb")
    with pytest.raises(ImageError, match="stack of 2 full-size pages.*one image per file"):
        read_image(stack)
    preview = tmp_path / "preview.tiff"
    with tifffile.TiffWriter(preview) as tif:
        tif.write(RGB, photometric="rgb")
        tif.write(RGB[::2, ::2], photometric="rgb", subfiletype=1)  # a reduced-size preview
    assert np.array_equal(read_image(preview), RGB)


def test_unusable_tiffs_fail_with_the_file_name(tmp_path):
    tifffile.imwrite(tmp_path / "float.tiff", RGB.astype(np.float32), photometric="rgb")
    with pytest.raises(ImageError, match="float.tiff: float32 samples"):
        read_image(tmp_path / "float.tiff")
    (tmp_path / "junk.tiff").write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageError, match="junk.tiff: cannot read this TIFF"):
        read_image(tmp_path / "junk.tiff")


def test_tiff_masks_keep_their_values(tmp_path):
    index = np.zeros((10, 10), np.uint16)
    index[2:5, 2:5], index[6:8, 6:8] = 1, 2
    tifffile.imwrite(tmp_path / "index16.tiff", index)
    assert np.array_equal(read_mask(tmp_path / "index16.tiff", MaskDecoder("index", 3)), index)
    binary = (index > 0).astype(np.uint16) * 65535
    tifffile.imwrite(tmp_path / "binary16.tiff", binary)
    decoder = MaskDecoder("binary", 2)
    assert np.array_equal(read_mask(tmp_path / "binary16.tiff", decoder), index > 0)
    tifffile.imwrite(tmp_path / "bool.tiff", index > 0)
    assert np.array_equal(read_mask(tmp_path / "bool.tiff", decoder), index > 0)


def test_cvc_colondb_original_tiffs_match_the_distributed_copies():
    root = real_data("cvc-colondb")
    decoder = MaskDecoder("binary", 2)
    for path in sorted((root / "tiff-originals" / "images").glob("*.tiff")):
        image = read_image(path)
        jpeg = read_image(root / "images" / f"{path.stem}.jpg")  # JPEG quality 95 of the TIFF
        assert image.shape == jpeg.shape == (500, 574, 3)
        assert np.abs(image.astype(int) - jpeg).mean() < 3
        mask = read_mask(root / "tiff-originals" / "masks" / path.name, decoder)
        assert np.array_equal(mask, read_mask(root / "masks" / f"{path.stem}.png", decoder))
