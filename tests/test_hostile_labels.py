"""Hostile and careless label files: every one is a one-line error naming the file and the fix
(exit 2, no traceback), read within bounded memory, and nothing is written; and the annotation
round trip (predict --format coco|cvat, import-labels) never merges, drops or empties labels."""

from __future__ import annotations

import copy
import json
import re
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import process_env, run_cli
from run_fixtures import make_run
from unetkit.curation.labels import export_labels, read_labels
from unetkit.curation.reading import MAX_LABEL_BYTES

pytest.importorskip("pycocotools")
pytest.importorskip("defusedxml")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

W, H = 48, 40
NAMES = ["a.png", "b.png", "c.png"]
CLASSES = ["background", "polyp"]


def box_mask(i: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[5 + i:20 + i, 8 + 2 * i:30] = 1
    return mask


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """images/ and masks/ of three 48x40 images, with a COCO and a CVAT export of the masks."""
    root = tmp_path_factory.mktemp("labels")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    entries = []
    for i, name in enumerate(NAMES):
        pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / name)
        Image.fromarray(box_mask(i) * 255).save(root / "masks" / name)
        entries.append((name, box_mask(i)))
    export_labels(entries, root / "base.json", CLASSES)
    export_labels(entries, root / "base.xml", CLASSES)
    return root


def import_labels_cli(data: Path, label_file: Path, out: Path, *extra: str):
    return run_cli("import-labels", str(label_file), "--images", str(data / "images"), "--out",
                   str(out), "--quiet", *extra, check=False)


def one_line_error(proc, *words: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    return err


# ---------------------------------------------------------------------------------------------
# The hostile files, each made from the good exports by one change.


def coco(change):
    def build(data: Path, path: Path) -> Path:
        doc = json.loads((data / "base.json").read_text())
        out = change(doc)
        path = path.with_suffix(".json")
        path.write_text(out if isinstance(out, str) else json.dumps(doc))
        return path
    return build


def polygon(*coords):
    def change(doc):
        doc["annotations"][0]["segmentation"] = [list(coords)]
    return coco(change)


def cvat(change):
    def build(data: Path, path: Path) -> Path:
        path = path.with_suffix(".xml")
        path.write_text(change((data / "base.xml").read_text()))
        return path
    return build


def first_image(attrs: str):
    """The first <image>'s attributes replaced."""
    return cvat(lambda t: re.sub(r"<image [^>]*?(/?)>", lambda m: f"<image {attrs}{m.group(1)}>",
                                 t, count=1))


def first_mask(**attrs):
    def change(text):
        def edit(m):
            tag = m.group(0)
            for key, value in attrs.items():
                tag = re.sub(rf'{key}="[^"]*"', f'{key}="{value}"', tag)
            return tag
        return re.sub(r"<mask [^>]*>", edit, text, count=1)
    return cvat(change)


def cvat_polygon(points: str):
    return cvat(lambda t: t.replace(
        'height="40">', f'height="40"><polygon label="polyp" points="{points}" z_order="0"/>', 1))


def set_key(key, value, where="images"):
    def change(doc):
        doc[where][0][key] = value
    return coco(change)


def rle_counts(counts, size=None):
    def change(doc):
        doc["annotations"][0]["segmentation"] = {"size": size or [H, W], "counts": counts}
    return coco(change)


def zip_bomb(mb: int, declared: int | None = None, directory: int | None = None):
    """A CVAT export ZIP whose annotations.xml unpacks to `mb` MiB of spaces: the deflate
    stream of one MiB, cut off by a full flush, repeats byte for byte, so it costs nothing to
    make. `declared`: the size its central directory claims (default the true one); `directory`:
    the central directory's size its end record claims (default the true one). The CRC is
    left 0: a reader that stops at the byte limit never gets to check it."""
    def build(data: Path, path: Path) -> Path:
        head, tail, chunk = b"<annotations>", b"</annotations>", b" " * (1 << 20)
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
        block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
        stream = first + block * mb + c.compress(tail) + c.flush()
        size = len(head) + len(tail) + (mb << 20)
        name = b"annotations.xml"
        local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(stream),
                            size, len(name), 0) + name
        central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, 0,
                              len(stream), declared or size, len(name), 0, 0, 0, 0, 0, 0) + name
        end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, directory or len(central),
                          len(local) + len(stream), 0)
        path = path.with_suffix(".zip")
        path.write_bytes(local + stream + central + end)
        return path
    return build


LAUGHS = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l0 "ha">'
          + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
          + ']><annotations><image name="a.png" width="48" height="40">&l9;</image></annotations>')
EXTERNAL = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            '<annotations><image name="&x;" width="48" height="40"/></annotations>')
VIDEO = ('<annotations><version>1.1</version><meta><task><mode>interpolation</mode></task></meta>'
         '<track id="0" label="polyp" source="manual"><polygon frame="0" outside="0" '
         'occluded="0" keyframe="1" points="1,1;20,1;20,20" z_order="0"/></track></annotations>')

HOSTILE = {  # id: (build, words the error must hold, extra arguments)
    # COCO structure (each was a traceback)
    "coco-annotations-5": (coco(lambda d: d.update(annotations=5)), ["needs lists"], []),
    "coco-category-name-list": (coco(lambda d: d["categories"][0].update(name=["polyp"])),
                                ["category"], []),
    "coco-deep-json": (coco(lambda d: "[" * 200_000 + "]" * 200_000), ["nested too deeply"], []),
    "coco-negative-width": (set_key("width", -48), ["width -48", "positive"], []),
    "coco-file-name-123": (set_key("file_name", 123), ["without a file name"], []),
    "coco-file-name-null": (set_key("file_name", None), ["without a file name"], []),
    "coco-rle-minus-5": (rle_counts([-5, H * W + 5]), ["negative run length (-5)"], []),
    "coco-rle-10e30": (rle_counts([10**30]), ["adding up to"], []),
    "coco-rle-negative-size": (rle_counts([H * W], [-H, W]), ["annotate the image at its"], []),
    # compressed counts of a 480x400 mask in a 48x40 one: the error says what is wrong
    "coco-rle-string-too-long": (rle_counts("0P`k5"), ["adding up to 192000"], []),
    "coco-rle-string-alphabet": (rle_counts("~~~"), ["alphabet"], []),
    "coco-polygon-nan": (polygon(1, 1, float("nan"), 1, 20, 20), ["finite"], []),
    "coco-polygon-inf": (polygon(1, 1, float("inf"), 1, 20, 20), ["finite"], []),
    "coco-polygon-1e12": (polygon(1, 1, 1e12, 1, 20, 1e12), ["outside the 48x40 image"], []),
    "coco-polygon-1e7": (polygon(1, 1, 1e7, 1, 20, 20), ["outside the 48x40 image"], []),
    "coco-polygon-2-points": (polygon(1, 1, 20, 20), ["at least 3 points"], []),
    "cvat-polygon-many-points": (cvat_polygon(";".join(["1,1"] * 100_001)),
                                 ["100,001 points", "simplify"], []),
    "coco-polygon-zigzag": (polygon(*([0, 0, 48, 40] * 12_000), 0, 40), ["outline"], []),
    "coco-same-file-name": (coco(lambda d: d["images"][1].update(file_name="a.png")),
                            ["two images are named 'a.png'"], []),
    "coco-no-images": (coco(lambda d: d.update(images=[], annotations=[])), ["no images"], []),
    # a size declared far over the real image's: refused before anything is allocated
    "coco-20000x20000": (coco(lambda d: [im.update(width=20000, height=20000)
                                         for im in d["images"]]), ["20000x20000", "pixels"], []),
    # a declared size that differs from the image's, and a broken annotation of that image:
    # the size is compared first, so the size is what is reported
    "coco-size-before-decoding": (coco(lambda d: (d["images"][0].update(width=40, height=30),
                                                  d["annotations"][0].update(segmentation={
                                                      "size": [30, 40], "counts": [-1]}))),
                                  ["is 40x30 but", "a.png is 48x40"], []),
    # CVAT (each was a traceback)
    "cvat-image-width-minus-96": (first_image('name="a.png" width="-96" height="40"'),
                                  ["width -96"], []),
    "cvat-mask-box-minus-10x0": (first_mask(width=-10, height=0), ["not a box of whole"], []),
    "cvat-z-order-top": (first_mask(z_order="top"), ["z_order 'top'"], []),
    "cvat-image-without-name": (first_image('width="48" height="40"'), ["without a file"], []),
    "cvat-negative-run": (first_mask(rle="-5, 1925"), ["negative run length (-5)"], []),
    "cvat-same-name": (cvat(lambda t: t.replace('name="b.png"', 'name="a.png"')),
                       ["two images are named 'a.png'"], []),
    "cvat-polygon-nan": (cvat_polygon("1,1;nan,1;20,20"), ["finite"], []),
    "cvat-polygon-1e12": (cvat_polygon("1,1;1e12,1;20,1e12"), ["outside the 48x40"], []),
    "cvat-for-video": (cvat(lambda t: VIDEO), ["CVAT for video 1.1", "CVAT for images 1.1"], []),
    "cvat-billion-laughs": (cvat(lambda t: LAUGHS), ["entities", "never expands"], []),
    "cvat-external-entity": (cvat(lambda t: EXTERNAL), ["entities"], []),
    "cvat-zip-bomb-1gib": (zip_bomb(1024), ["unpacked", f"{MAX_LABEL_BYTES:,}"], []),
    "cvat-zip-bomb-lying": (zip_bomb(1024, declared=1000), ["not a CVAT"], []),
    "cvat-zip-directory-2gb": (zip_bomb(1, directory=2 << 30), ["list of files", "split"], []),
    "cvat-too-many-elements": (cvat(lambda t: "<annotations>" + "<a/>" * 1_000_001
                                    + "</annotations>"), ["more than 1,000,000 XML"], []),
    "coco-over-byte-limit": (coco(lambda d: json.dumps({"images": [], "pad": " " * (33 << 20)})),
                             ["over 33,554,432 bytes", "split the task"], []),
    # options
    "colors-out-of-range": (coco(lambda d: None), ["999,-5,0", "0..255"],
                            ["--colors", "0,0,0;999,-5,0"]),
    "colors-two-values": (coco(lambda d: None), ["255,0", "is not R,G,B"],
                          ["--colors", "0,0,0;255,0"]),
    "colors-equal": (coco(lambda d: None), ["same colour"], ["--colors", "0,0,0;0,0,0"]),
    "classes-300": (coco(lambda d: None), ["300 classes", "at most 255"],
                    ["--classes", ",".join(["background", "polyp"] + [f"c{i}" for i in
                                                                       range(298)])]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_label_file_is_one_line(tmp_path, data, case):
    build, words, extra = HOSTILE[case]
    path = build(data, tmp_path / case)
    out = tmp_path / "out"
    named = [] if extra else [path.name]  # the file, or else the option, is named
    one_line_error(import_labels_cli(data, path, out, *extra), *named, *words)
    assert not out.exists()


MEMORY_CASES = ["coco-polygon-1e12", "coco-polygon-1e7", "coco-20000x20000", "coco-deep-json",
                "cvat-zip-bomb-1gib", "cvat-billion-laughs", "coco-polygon-zigzag"]
MEMORY_CAP_MB = 1200  # data memory (RLIMIT_DATA); unetkit with torch imported reserves ~850 MB

DRIVER = """
import contextlib, io, json, sys
from unetkit.cli.main import main
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as exc:
            rc = exc.code
    print(json.dumps([rc, err.getvalue()]), flush=True)
"""


def test_hostile_label_files_stay_within_memory(tmp_path, data):
    """Before: coordinates near 1e12 crashed pycocotools (SIGSEGV), 1e7 peaked at 1.7 GB, a ZIP
    unpacking to 1 GiB at 2.6 GB, a declared 20000x20000 image allocated 400 MB per image."""
    runs = []
    for case in MEMORY_CASES:
        path = HOSTILE[case][0](data, tmp_path / case)
        runs.append(["import-labels", str(path), "--images", str(data / "images"), "--out",
                     str(tmp_path / "out"), "--quiet"])

    def limit():
        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_CAP_MB << 20, MEMORY_CAP_MB << 20))

    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(runs)], env=process_env(),
                          preexec_fn=limit, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(results) == len(MEMORY_CASES), proc.stdout
    for case, (rc, err) in zip(MEMORY_CASES, results, strict=True):
        assert rc == 2 and "Traceback" not in err and "MemoryError" not in err, (case, err)
        for word in HOSTILE[case][1]:
            assert word in err, (case, err)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The round trip: nothing merged, dropped or emptied.


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("labels-run") / "run",
                    ["model.base_channels=4", "model.depth=2", "data.image_size=[32,32]"])


def predict_labels(run: Path, *args: str):
    return run_cli("predict", str(run), *args, "--quiet", check=False)


@pytest.mark.parametrize("fmt", ["coco", "cvat"])
def test_two_inputs_of_one_name_are_refused(tmp_path, data, run, fmt):
    """Two folders each holding a.png: COCO merged their annotations, CVAT dropped one."""
    other = tmp_path / "other"
    other.mkdir()
    Image.open(data / "images" / "a.png").transpose(Image.FLIP_LEFT_RIGHT).save(other / "a.png")
    out = tmp_path / "pre"
    one_line_error(predict_labels(run, str(data / "images"), str(other), "--format", fmt,
                                  "--out", str(out)), "share the name 'a'", "rename one")
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["coco", "cvat"])
def test_stems_that_match_nothing_are_refused(tmp_path, data, run, fmt):
    stems = tmp_path / "stems.txt"
    stems.write_text("zz\nyy\n")
    out = tmp_path / "pre"
    one_line_error(predict_labels(run, str(data / "images"), "--format", fmt, "--stems",
                                  str(stems), "--out", str(out)), "2 of the 2 stems", "'zz'")
    assert not out.exists()
    stems.write_bytes(b"a\n\xff\xfe\n")  # not UTF-8
    one_line_error(predict_labels(run, str(data / "images"), "--format", fmt, "--stems",
                                  str(stems), "--out", str(out)), "stems.txt", "UTF-8")


def test_a_control_character_in_a_file_name_is_refused(tmp_path, data, run):
    """It wrote XML that does not parse."""
    images = tmp_path / "images"
    images.mkdir()
    Image.open(data / "images" / "a.png").save(images / "a\x01b.png")
    out = tmp_path / "pre.xml"
    one_line_error(predict_labels(run, str(images), "--format", "cvat", "--out", str(out)),
                   "control character", "rename the file")
    assert not out.exists()


def test_label_masks_of_another_size_than_their_images_are_refused(tmp_path, data, run):
    """The CVAT file declared the mask's size as the image's."""
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in NAMES:
        Image.open(data / "masks" / name).resize((24, 20)).save(masks / name)
    out = tmp_path / "pre"
    one_line_error(predict_labels(run, str(data / "images"), "--format", "cvat", "--label-masks",
                                  str(masks), "--out", str(out)), "24x20", "48x40")
    assert not out.exists()
    # the masks at the images' size: exported, and read back pixel for pixel
    assert predict_labels(run, str(data / "images"), "--format", "cvat", "--label-masks",
                          str(data / "masks"), "--out", str(out)).returncode == 0
    back = read_labels(out / "annotations.xml", ["background", "foreground"])  # the run's
    assert list(back) == NAMES
    for i, name in enumerate(NAMES):
        assert np.array_equal(back[name], box_mask(i))


def test_polygons_round_trip_and_a_good_file_still_imports(tmp_path, data):
    """The checks refuse only what is wrong: polygons inside the image (to one pixel of slack)
    and both formats' own exports import exactly."""
    doc = json.loads((data / "base.json").read_text())
    doc = copy.deepcopy(doc)
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != 1]
    doc["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "iscrowd": 0,
                               "segmentation": [[-0.5, -0.5, 48.5, -0.5, 48.5, 40.5, -0.5, 40.5]]})
    path = tmp_path / "poly.json"
    path.write_text(json.dumps(doc))
    back = read_labels(path, CLASSES)
    assert back["a.png"].all()  # the whole image
    for base in ("base.json", "base.xml"):
        out = tmp_path / f"out-{base}"
        assert import_labels_cli(data, data / base, out).returncode == 0
        for i, name in enumerate(NAMES):
            assert np.array_equal(np.asarray(Image.open(out / name)) > 0, box_mask(i) > 0)


def test_an_empty_npy_map_is_one_line(tmp_path, data):
    """A (0, H, W) probability array made `audit` end in a ValueError traceback (zero-size)."""
    maps = tmp_path / "maps"
    maps.mkdir()
    for name in NAMES:
        np.save(maps / f"{Path(name).stem}.npy", np.zeros((0, H, W), np.float32))
    out = tmp_path / "audit"
    one_line_error(run_cli("audit", str(data), str(maps), "--out", str(out), "--quiet",
                           check=False), ".npy", "(0, 40, 48)")
