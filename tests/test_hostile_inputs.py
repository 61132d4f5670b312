"""Odd and hostile image files: each is read correctly or refused with a message naming it; a
batch prediction over a folder of them reports the bad ones and writes the rest."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit import config as config_mod
from unetkit.data.synthetic import write_dataset
from unetkit.inference.predict import output_stem, predict_files
from unetkit.io.budget import ImageError
from unetkit.io.images import read_image
from unetkit.training.fit import fit

RGB = np.zeros((12, 20, 3), np.uint8)
RGB[:, :10] = (255, 0, 0)  # left half red, right half blue
RGB[:, 10:] = (0, 0, 255)


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG that claims huge dimensions (a decompression bomb) in a few bytes."""
    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
            + chunk(b"IEND", b""))


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: shown rotated 90 degrees clockwise
    return jpeg_bytes(Image.fromarray(RGB), exif=exif.tobytes())


def sixteen_bit() -> bytes:
    values = np.full((12, 20), 0xABCD, np.uint16)
    return png_bytes(Image.fromarray(values))


def palette_with_transparency() -> bytes:
    img = Image.fromarray(RGB).convert("P", palette=Image.ADAPTIVE, colors=4)
    return png_bytes(img, transparency=0)


good_jpeg = jpeg_bytes(Image.fromarray(RGB))
good_png = png_bytes(Image.fromarray(RGB))

# name, file bytes, expected: a check of the (H, W, 3) array read, or the error text to match.
CASES = [
    ("plain.jpg", good_jpeg, lambda a: a.shape == (12, 20, 3) and a[0, 0, 0] > 200),
    ("file with spaces ünïcødé 病変.png", good_png, lambda a: a.shape == (12, 20, 3)),
    ("cmyk.jpg", jpeg_bytes(Image.fromarray(RGB).convert("CMYK")),
     lambda a: a.shape == (12, 20, 3) and a[0, 0, 0] > 200 and a[0, -1, 2] > 200),
    ("grey.png", png_bytes(Image.fromarray(RGB).convert("L")),
     lambda a: a.shape == (12, 20, 3) and (a[..., 0] == a[..., 1]).all()),
    ("sixteen-bit.png", sixteen_bit(), lambda a: a.shape == (12, 20, 3) and (a == 0xAB).all()),
    ("palette.png", palette_with_transparency(), lambda a: a.shape == (12, 20, 3)),
    ("exif-rotated.jpg", exif_rotated(),  # shown portrait: the red left half is now on top
     lambda a: a.shape == (20, 12, 3) and a[2, 6, 0] > 200 and a[-3, 6, 2] > 200),
    ("rgba.png", png_bytes(Image.fromarray(RGB).convert("RGBA")), lambda a: a.shape == (12, 20, 3)),
    ("truncated-jpeg.jpg", good_jpeg[: len(good_jpeg) // 2], "cannot read this image"),
    ("truncated-png.png", good_png[: len(good_png) // 2], "cannot read this image"),
    ("corrupt.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "cannot read this image"),
    ("not-an-image.png", b"name,value\nthis is a csv file\n", "cannot read this image"),
    ("empty.png", b"", "cannot read this image"),
    ("bomb.png", png_header_only(40_000, 40_000), "downscale the image first"),
    ("just-too-big.png", png_header_only(10_000, 10_001), "downscale the image first"),
]


@pytest.mark.parametrize("name, content, expected", CASES, ids=[c[0] for c in CASES])
def test_odd_and_hostile_images(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    if isinstance(expected, str):
        with pytest.raises(ImageError) as err:
            read_image(path, 3)
        message = str(err.value)
        assert str(path) in message and expected in message
        assert "re-export" in message or "downscale" in message  # says what to do
    else:
        arr = read_image(path, 3)
        assert arr.dtype == np.uint8 and expected(arr), arr.shape


def test_output_names_stay_in_the_output_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert output_stem(out, Path("/elsewhere/a b ü.png")) == out / "a b ü"
    with pytest.raises(ImageError, match="outside"):
        output_stem(out, Path("/data/...png"))  # the stem '..' would name out's parent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    data = write_dataset(root / "data", count=12, size=32)
    cfg = config_mod.load(overrides=[
        "model.base_channels=4", "model.depth=2", "data.image_size=[32,32]", "train.epochs=1",
        "train.batch_size=4", "train.device='cpu'", "train.samples=0"], data_root=str(data))
    fit(cfg, root / "run", progress=False, log=lambda *a: None)
    return root / "run"


def test_batch_predict_reports_bad_files_and_finishes_the_rest(tiny_run, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name, content, _ in CASES:
        (folder / name).write_bytes(content)
    (folder / "notes.txt").write_text("not an image: skipped, as it has no image extension")
    notes = []
    result = predict_files(tiny_run, [str(folder)], tmp_path / "masks", progress=False,
                           device="cpu", log=notes.append)
    good = [n for n, _, e in CASES if not isinstance(e, str)]
    bad = [n for n, _, e in CASES if isinstance(e, str)]
    assert result["written"] == len(good)
    assert len(result["failed"]) == len(bad)
    assert all(any(n in line for line in result["failed"]) for n in bad)
    written = sorted(p.name for p in (tmp_path / "masks").iterdir())
    masks = [Path(n).stem + ".png" for n in good]
    assert written == sorted(masks + ["summary.csv", "summary.json"])  # summaries of the good ones
    summary = json.loads((tmp_path / "masks" / "summary.json").read_text())
    assert sorted(s["image"] for s in summary) == sorted(good)
    rotated = np.asarray(Image.open(tmp_path / "masks" / "exif-rotated.png"))
    assert rotated.shape == (20, 12)  # the mask has the shape of the image as shown
