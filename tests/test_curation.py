"""Data curation: the audit finds planted label errors and duplicates on real Kvasir-SEG; masks
go out as COCO / CVAT pre-labels and come back pixel for pixel; bad label files are one clear
error; imported masks never land in the original mask folder."""

from __future__ import annotations

import argparse
import html
import io
import json
import math
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import real_data
from unetkit import config as config_mod
from unetkit.cli.curation import (
    add_audit_arguments,
    add_export_arguments,
    add_import_arguments,
    run_audit,
    run_export,
    run_import,
)
from unetkit.curation.audit import audit, read_audit
from unetkit.curation.errors import LabelError
from unetkit.curation.labels import export_labels, import_labels, masks_from_folder, read_labels
from unetkit.data.folders import pair_items
from unetkit.io.images import MaskDecoder, read_mask

pytest.importorskip("pycocotools")
pytest.importorskip("imagehash")
# pycocotools' decoder on NumPy 2 (its own code, harmless)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NEOPOLYP_CLASSES = ["background", "neoplastic", "non_neoplastic"]
NEOPOLYP_COLORS = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
BINARY = ["background", "polyp"]


def kvasir_entries(n: int = 30):
    root = real_data("kvasir-seg")
    stems = sorted(p.stem for p in (root / "images").iterdir())[:n]
    return root, masks_from_folder(root / "images", root / "masks", MaskDecoder("binary", 2),
                                   stems, progress=False)


def neopolyp_entries(n: int = 15):
    root = real_data("bkai-igh-neopolyp")
    names = sorted(p.stem for p in (root / "train").iterdir())
    # masks with red and masks with green: both classes appear
    decoder = MaskDecoder("color", 3, colors=NEOPOLYP_COLORS)
    entries = masks_from_folder(root / "train", root / "train_gt", decoder, names[:n],
                                progress=False)
    return root, entries


# ---------------------------------------------------------------------------------------------
# Round trips on real masks.


def coco_masks_by_reader(path: Path, classes: list[str]) -> dict[str, np.ndarray]:
    """The masks as pycocotools' own reader sees them (COCO + annToMask)."""
    from pycocotools.coco import COCO

    with pytest.MonkeyPatch.context() as mp:  # COCO prints while loading
        mp.setattr("sys.stdout", io.StringIO())
        coco = COCO(str(path))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    out = {}
    for img in coco.loadImgs(coco.getImgIds()):
        mask = np.zeros((img["height"], img["width"]), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
            part = coco.annToMask(ann).astype(bool)
            assert not (mask[part] > 0).any(), "annotations of one image overlap"
            mask[part] = classes.index(names[ann["category_id"]])
        out[img["file_name"]] = mask
    return out


def check_cvat_schema(path: Path, classes: list[str]) -> int:
    """The required elements and attributes of CVAT for images 1.1 (docs.cvat.ai, XML annotation
    format); returns the number of <mask> shapes."""
    root = ET.parse(path).getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    for key in ("id", "name", "size", "mode", "labels"):
        assert task.find(key) is not None, f"<task> lacks <{key}>"
    assert task.findtext("mode") == "annotation"
    labels = [lb.findtext("name") for lb in task.findall("labels/label")]
    assert labels == classes[1:]
    for lb in task.findall("labels/label"):
        assert re.fullmatch(r"#[0-9a-f]{6}", lb.findtext("color"))
    images = root.findall("image")
    assert int(task.findtext("size")) == len(images)
    shapes = 0
    for i, image in enumerate(images):
        assert image.get("id") == str(i) and image.get("name")
        w, h = int(image.get("width")), int(image.get("height"))
        for mask in image:
            assert mask.tag == "mask"
            for attr in ("label", "source", "occluded", "rle", "left", "top", "width", "height",
                         "z_order"):
                assert mask.get(attr) is not None, f"<mask> lacks {attr}"
            assert mask.get("label") in labels
            left, top = int(mask.get("left")), int(mask.get("top"))
            bw, bh = int(mask.get("width")), int(mask.get("height"))
            assert 0 <= left and left + bw <= w and 0 <= top and top + bh <= h
            counts = [int(v) for v in mask.get("rle").split(",")]
            assert sum(counts) == bw * bh and min(counts) >= 0
            shapes += 1
    return shapes


@pytest.mark.parametrize("dataset", ["kvasir", "neopolyp"])
def test_masks_round_trip_through_coco_and_cvat(tmp_path, dataset):
    if dataset == "kvasir":
        root, entries = kvasir_entries(30)
        classes, colors, images = BINARY, None, root / "images"
    else:
        root, entries = neopolyp_entries(15)
        classes, colors, images = NEOPOLYP_CLASSES, NEOPOLYP_COLORS, root / "train"
        assert {1, 2} <= set(np.unique(np.concatenate([m.ravel() for _, m in entries])))
    for suffix in (".json", ".xml"):
        path = export_labels(entries, tmp_path / f"labels{suffix}", classes, colors)
        back = read_labels(path, classes)
        assert list(back) == [n for n, _ in entries]
        for name, mask in entries:
            assert np.array_equal(back[name], mask), name
        if suffix == ".json":  # the format's own reader agrees
            data = json.loads(path.read_text())
            assert [c["name"] for c in data["categories"]] == classes[1:]
            seen = coco_masks_by_reader(path, classes)
            for name, mask in entries:
                assert np.array_equal(seen[name], mask), name
            # one annotation per connected component (Kvasir: several polyps in a few images)
            assert len(data["annotations"]) >= len(entries)
        else:
            assert check_cvat_schema(path, classes) >= len(entries)
        # ... and import writes masks that decode to the same classes, in the data set's encoding
        out = tmp_path / f"imported{suffix.replace('.', '-')}"
        result = import_labels(path, images, out, classes, colors, progress=False)
        assert result["written"] == len(entries)
        decoder = MaskDecoder("color", 3, colors=colors) if colors else MaskDecoder("binary", 2)
        for name, mask in entries:
            png = out / f"{Path(name).stem}.png"
            assert np.array_equal(read_mask(png, decoder), mask), name
            values = np.unique(np.asarray(Image.open(png)))
            if colors is None:
                assert set(values.tolist()) <= {0, 255}


# ---------------------------------------------------------------------------------------------
# Bad input: one clear error, and never a write into the original masks.


@pytest.fixture
def small_set(tmp_path):
    """12 NeoPolyp images (linked) with their masks, and a COCO export of them."""
    root, entries = neopolyp_entries(12)
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train_gt").mkdir()
    for name, _ in entries:
        (data / "train" / name).symlink_to(root / "train" / name)
        shutil.copy(root / "train_gt" / name, data / "train_gt" / name)
    coco = export_labels(entries, tmp_path / "labels.json", NEOPOLYP_CLASSES, NEOPOLYP_COLORS)
    return data, entries, coco


def test_bad_label_files_are_one_clear_error(tmp_path, small_set):
    data, entries, coco = small_set
    images = data / "train"
    args = (images, tmp_path / "out", NEOPOLYP_CLASSES, NEOPOLYP_COLORS)
    broken = tmp_path / "broken.json"
    broken.write_text(coco.read_text()[:500])
    with pytest.raises(LabelError, match=r"broken\.json: not a COCO annotation file.*export it"):
        import_labels(broken, *args)
    bad_xml = tmp_path / "broken.xml"
    bad_xml.write_text("<annotations><image name='a.jpeg'")
    with pytest.raises(LabelError, match=r"broken\.xml: not a CVAT for images 1\.1 file"):
        import_labels(bad_xml, *args)
    # a category that is not a class of the data set
    doc = json.loads(coco.read_text())
    doc["categories"][0]["name"] = "adenoma"
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps(doc))
    with pytest.raises(LabelError, match=r"renamed\.json: categories \['adenoma'\] are not "
                                         r"classes.*--classes"):
        import_labels(renamed, *args)
    # an annotation made on a resized copy of the image
    doc = json.loads(coco.read_text())
    doc["images"][0]["width"] //= 2
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != 1]
    resized = tmp_path / "resized.json"
    resized.write_text(json.dumps(doc))
    name = doc["images"][0]["file_name"]
    with pytest.raises(LabelError, match=rf"resized\.json: the mask of {name} is .* annotate "
                                         "the image at its own size"):
        import_labels(resized, *args)
    # a CVAT mask whose runs do not fill its box, and a label CVAT knows but the data set does not
    cvat = export_labels(entries, tmp_path / "labels.xml", NEOPOLYP_CLASSES, NEOPOLYP_COLORS)
    text = cvat.read_text()
    short = tmp_path / "short.xml"
    short.write_text(re.sub(r'rle="(\d+)', lambda m: f'rle="{int(m.group(1)) + 7}', text, count=1))
    with pytest.raises(LabelError, match=r"short\.xml: a <mask> of .* runs adding up"):
        import_labels(short, *args)
    other = tmp_path / "other.xml"
    other.write_text(text.replace('label="neoplastic"', 'label="adenoma"'))
    with pytest.raises(LabelError, match=r"other\.xml: .* labelled 'adenoma'"):
        import_labels(other, *args)
    assert isinstance(LabelError("x"), ValueError)
    assert not (tmp_path / "out").exists()  # nothing was written by any failed import


def test_import_never_writes_into_the_original_masks(tmp_path, small_set):
    data, entries, coco = small_set
    masks = data / "train_gt"
    before = {p.name: p.read_bytes() for p in masks.iterdir()}
    for target in (masks, masks / "curated", data / "train" / "masks"):
        with pytest.raises(LabelError, match="never replace the originals"):
            import_labels(coco, data / "train", target, NEOPOLYP_CLASSES, NEOPOLYP_COLORS)
    # a mask folder elsewhere, named explicitly, is protected too
    with pytest.raises(LabelError, match="never replace the originals"):
        import_labels(coco, data / "train", tmp_path / "elsewhere" / "x", NEOPOLYP_CLASSES,
                      NEOPOLYP_COLORS, mask_dir=tmp_path / "elsewhere")
    assert {p.name: p.read_bytes() for p in masks.iterdir()} == before
    out = data / "train_gt_curated"
    import_labels(coco, data / "train", out, NEOPOLYP_CLASSES, NEOPOLYP_COLORS, progress=False)
    assert len(list(out.iterdir())) == len(entries)
    with pytest.raises(LabelError, match="already exist"):  # never overwrites
        import_labels(coco, data / "train", out, NEOPOLYP_CLASSES, NEOPOLYP_COLORS)
    # corrections of 5 images + the other originals: a complete folder unetkit trains on
    part = export_labels(entries[:5], tmp_path / "part.json", NEOPOLYP_CLASSES, NEOPOLYP_COLORS)
    full = tmp_path / "full"
    r = import_labels(part, data / "train", full, NEOPOLYP_CLASSES, NEOPOLYP_COLORS,
                      keep_others=True, progress=False)
    assert (r["written"], r["kept"]) == (5, len(entries) - 5)
    for name, _ in entries[5:]:
        assert (full / name).read_bytes() == before[name]
    cfg = config_mod.load("neopolyp-unet3", overrides=[f"data.images={data / 'train'}",
                                                        f"data.masks={full}"])
    items, problems = pair_items(data, cfg.data)
    assert len(items) == len(entries) and not problems
    assert {p.name: p.read_bytes() for p in masks.iterdir()} == before


def test_import_and_export_commands(tmp_path, small_set):
    """The CLI pieces: colours from the recipe, pre-labels from a data set's masks."""
    data, entries, coco = small_set
    p = argparse.ArgumentParser()
    add_import_arguments(p)
    out = tmp_path / "cli-masks"
    args = p.parse_args([str(coco), "--images", str(data / "train"), "--out", str(out),
                         "--recipe", "neopolyp-unet3"])
    assert run_import(args) == 0
    decoder = MaskDecoder("color", 3, colors=NEOPOLYP_COLORS)
    for name, mask in entries:
        assert np.array_equal(read_mask(out / f"{Path(name).stem}.png", decoder), mask)
    # export needs a run folder: make an untrained one with the recipe's data settings
    from unetkit.models.unet import build_model
    from unetkit.runs.folder import save_weights, write_model_card

    cfg = config_mod.load("neopolyp-unet3", overrides=["model.base_channels=4", "model.depth=2",
                                                        "data.image_size=[32,32]",
                                                        "data.mean=[0.5,0.5,0.5]",
                                                        "data.std=[0.5,0.5,0.5]"])
    run = tmp_path / "run"
    run.mkdir()
    save_weights(build_model(cfg), run / "model.safetensors")
    write_model_card(run, cfg)
    stems = tmp_path / "stems.txt"
    stems.write_text("".join(f"{Path(n).stem}\n" for n, _ in entries[:5]))
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True)
    add_export_arguments(p)
    for fmt, masks in (("cvat", ["--label-masks", str(data / "train_gt")]), ("coco", [])):
        args = p.parse_args([str(run), str(data / "train"), "--out", str(tmp_path / "pre"),
                             "--format", fmt, "--stems", str(stems), *masks])
        assert run_export(args) == 0
    back = read_labels(tmp_path / "pre" / "annotations.xml", NEOPOLYP_CLASSES)
    assert len(back) == 5
    for name, mask in entries[:5]:
        assert np.array_equal(back[name], mask)
    predicted = read_labels(tmp_path / "pre" / "labels.json", NEOPOLYP_CLASSES)
    assert [Path(n).stem for n in predicted] == [Path(n).stem for n, _ in entries[:5]]
    # CVAT's export is a ZIP holding annotations.xml, with polygons where the curator drew them
    import zipfile

    xml = (tmp_path / "pre" / "annotations.xml").read_text()
    name = entries[0][0]
    xml = xml.replace(f'name="{name}" width', f'name="images/{name}" width', 1)
    xml = re.sub(rf'(<image [^>]*name="images/{re.escape(name)}"[^>]*>)',
                 r'\1<polygon label="non_neoplastic" source="manual" occluded="0" '
                 r'points="10,10;50,10;50,40;10,40" z_order="1" />', xml, count=1)
    with zipfile.ZipFile(tmp_path / "task.zip", "w") as z:
        z.writestr("annotations.xml", xml)
    p = argparse.ArgumentParser()
    add_import_arguments(p)
    args = p.parse_args([str(tmp_path / "task.zip"), "--images", str(data / "train"), "--out",
                         str(tmp_path / "from-zip"), "--classes", ",".join(NEOPOLYP_CLASSES),
                         "--colors", "0,0,0;255,0,0;0,255,0", "--keep-others"])
    assert run_import(args) == 0
    got = read_mask(tmp_path / "from-zip" / f"{Path(name).stem}.png", decoder)
    expected = entries[0][1].copy()
    expected[10:41, 10:51] = 2  # the polygon, its outline included, drawn over the mask
    assert np.array_equal(got, expected)
    assert len(list((tmp_path / "from-zip").iterdir())) == len(entries)


# ---------------------------------------------------------------------------------------------
# Planted label errors on real Kvasir-SEG.

AUDITED = 200  # Kvasir-SEG images audited (a seeded choice), plus DUPLICATES copies
ERASED, SHIFTED, SWAPPED_PAIRS, DUPLICATES = 10, 5, 3, 5


def binary_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 128


def plant(root: Path, out: Path, seed: int = 0) -> dict:
    """A data set of AUDITED real images with planted label errors: half of ERASED masks erased,
    SHIFTED masks moved by 40 % of the image, SWAPPED_PAIRS pairs of masks swapped (each resized
    to the other image), and DUPLICATES training frames copied (90 % size, 5 % brighter, JPEG
    quality 70) into the test split. Returns the original masks, the planted stems and splits."""
    rng = np.random.default_rng(seed)
    stems = sorted(p.stem for p in (root / "images").iterdir())
    chosen = sorted(rng.choice(stems, AUDITED, replace=False).tolist())
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    original = {s: binary_mask(root / "masks" / f"{s}.jpg") for s in chosen}
    planted = {s: m.copy() for s, m in original.items()}
    order = rng.permutation(chosen).tolist()
    erased, order = order[:ERASED], order[ERASED:]
    shifted, order = order[:SHIFTED], order[SHIFTED:]
    swapped, order = order[:2 * SWAPPED_PAIRS], order[2 * SWAPPED_PAIRS:]
    for s in erased:  # the top, bottom, left or right half of the polyp's box is erased
        m = planted[s]
        ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        side = rng.integers(4)
        if side < 2:
            mid = (ys[0] + ys[-1]) // 2
            m[:mid] = False if side == 0 else m[:mid]
            m[mid:] = m[mid:] if side == 0 else False
        else:
            mid = (xs[0] + xs[-1]) // 2
            m[:, :mid] = False if side == 2 else m[:, :mid]
            m[:, mid:] = m[:, mid:] if side == 2 else False
    for s in shifted:  # moved by 40 % of the image towards its far side
        m = planted[s]
        h, w = m.shape
        ys, xs = np.nonzero(m)
        dy = int(0.4 * h) * (1 if ys.mean() < h / 2 else -1)
        dx = int(0.4 * w) * (1 if xs.mean() < w / 2 else -1)
        moved = np.zeros_like(m)
        src = m[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        moved[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
        planted[s] = moved
    for a, b in zip(swapped[::2], swapped[1::2], strict=True):
        ma, mb = planted[a], planted[b]
        planted[a] = resize_bool(mb, ma.shape)
        planted[b] = resize_bool(ma, mb.shape)
    for s in chosen:
        (out / "images" / f"{s}.jpg").symlink_to(root / "images" / f"{s}.jpg")
        Image.fromarray(planted[s].astype(np.uint8) * 255).save(out / "masks" / f"{s}.png")
    train = [s for s in chosen if s not in order[-40:]]
    test = order[-40:]
    sources = [s for s in order[:-40] if s in train][:DUPLICATES]
    copies = {}
    for i, s in enumerate(sources):
        img = Image.open(root / "images" / f"{s}.jpg").convert("RGB")
        w, h = img.size
        img = img.resize((int(w * 0.9), int(h * 0.9)), Image.BILINEAR)
        arr = np.clip(np.asarray(img, np.float32) * 1.05, 0, 255).astype(np.uint8)
        name = f"zz-copy-{i}"
        Image.fromarray(arr).save(out / "images" / f"{name}.jpg", quality=70)
        mask = resize_bool(original[s], (arr.shape[0], arr.shape[1]))
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / "masks" / f"{name}.png")
        original[name] = mask
        copies[name] = s
        test.append(name)
    (out / "splits").mkdir()
    (out / "splits" / "train.txt").write_text("\n".join(train) + "\n")
    (out / "splits" / "test.txt").write_text("\n".join(test) + "\n")
    return {"original": original, "errors": set(erased + shifted + swapped), "copies": copies,
            "kinds": {**{s: "erased" for s in erased}, **{s: "shifted" for s in shifted},
                      **{s: "swapped" for s in swapped}},
            "splits": {"train": out / "splits" / "train.txt", "test": out / "splits" / "test.txt"}}


def resize_bool(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.NEAREST)
    return np.asarray(img) > 127


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = real_data("kvasir-seg")
    out = tmp_path_factory.mktemp("planted") / "data"
    return out, plant(root, out)


def stand_in_probabilities(original: dict[str, np.ndarray], folder: Path, seed: int = 1):
    """STAND-IN "model predictions", derived from the ORIGINAL (unplanted) masks, never from the
    planted ones: what a good model would say, with a model's imperfections: soft edges (a blur
    of 1.5 % of the diagonal), the outline moved in or out by up to ~2 % of the diagonal, and
    on a fifth of the images an uncertain false polyp (p 0.55-0.8) or an uncertain miss of part
    of the polyp (p 0.2-0.45 over a quarter of it). The slow test below uses a trained model."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for stem, mask in original.items():
        h, w = mask.shape
        diag = math.hypot(h, w)
        img = Image.fromarray(mask.astype(np.uint8) * 255)
        p = np.asarray(img.filter(ImageFilter.GaussianBlur(0.015 * diag)), np.float32) / 255
        level = rng.uniform(0.3, 0.7)  # where the blurred edge is cut: the outline moves
        p = np.clip(0.5 + (p - level) * 4, 0.01, 0.99)
        flaw = rng.random()
        if flaw < 0.1:  # an uncertain false polyp somewhere
            yy, xx = np.ogrid[:h, :w]
            cy, cx, r = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w, 0.05 * diag
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
            p = np.where(blob & ~mask, rng.uniform(0.55, 0.8), p)
        elif flaw < 0.2:  # an uncertain miss of a quarter of the polyp's box
            ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            y0, x0 = (ys[0] + ys[-1]) // 2, (xs[0] + xs[-1]) // 2
            part = np.zeros_like(mask)
            part[y0:, x0:] = True
            p = np.where(part & mask, rng.uniform(0.2, 0.45), p)
        Image.fromarray((p * 255).round().astype(np.uint8)).save(folder / f"{stem}_prob.png")


def recall_at(rows: list[dict], errors: set[str], fraction: float) -> float:
    top = rows[:math.ceil(fraction * len(rows))]
    return sum(r["image"] in errors for r in top) / len(errors)


def check_page(out: Path, rows: list[dict], errors: set[str]) -> None:
    """audit.html exists, names why each shown image was flagged, and its images exist."""
    page = (out / "audit.html").read_text()
    sources = re.findall(r"<img src='([^']+)'", page)
    assert sources and all((out / s).is_file() for s in sources)
    shown = (out / "flagged.txt").read_text().split()
    for row in rows[:len(shown)]:
        assert row["image"] in page
        if row["image"] in errors:
            assert row["reasons"] and row["reasons"].split("; ")[0] in html.unescape(page)
    assert "Near-duplicate frames across splits" in page and "zz-copy-0" in page


@pytest.mark.slow
def test_audit_finds_planted_errors_with_stand_in_predictions(tmp_path, planted):
    data, truth = planted
    probs = tmp_path / "probs"
    stand_in_probabilities(truth["original"], probs)
    out = tmp_path / "audit"
    result = audit(data, probs, out, splits=truth["splits"], top=30, progress=False,
                   log=lambda *a: None)
    rows = result["rows"]
    assert len(rows) == AUDITED + DUPLICATES
    r5, r10 = recall_at(rows, truth["errors"], 0.05), recall_at(rows, truth["errors"], 0.10)
    r20 = recall_at(rows, truth["errors"], 0.20)
    print(f"stand-in predictions: recall of {len(truth['errors'])} planted errors in the top 5 % "
          f"{r5:.2f}, 10 % {r10:.2f}, 20 % {r20:.2f}")
    # Measured: 0.52, 0.95, 1.00 (the top 5 % is 11 images for 21 errors: 0.52 is the most
    # possible; the top 10 % is 21).
    assert r5 >= 0.45 and r10 >= 0.85 and r20 >= 0.95
    # near-duplicates: every planted copy found across the split, few other pairs
    cross = [d for d in result["duplicates"] if d["cross_split"]]
    found = {(d["image_a"], d["image_b"]) for d in cross} | \
        {(d["image_b"], d["image_a"]) for d in cross}
    assert all((copy, src) in found for copy, src in truth["copies"].items())
    assert len(cross) == len(truth["copies"])  # and no other pair across the split
    # the files: audit.csv ranked as returned, duplicates.csv, the page
    csv_rows = read_audit(out / "audit.csv")
    assert [r["image"] for r in csv_rows] == [r["image"] for r in rows]
    assert [int(r["rank"]) for r in csv_rows] == list(range(1, len(rows) + 1))
    assert (out / "duplicates.csv").read_text().count("True") == len(cross)
    check_page(out, rows, truth["errors"])


def test_audit_command_on_a_probability_folder(tmp_path, planted):
    """`run_audit` with the same inputs as above, on a subset of the images (--stems)."""
    data, truth = planted
    probs = tmp_path / "probs"
    stand_in_probabilities(truth["original"], probs)
    stems = tmp_path / "stems.txt"
    chosen = sorted(truth["errors"])[:4] + sorted(set(truth["original"]) - truth["errors"])[:8]
    stems.write_text("\n".join(chosen) + "\n")
    p = argparse.ArgumentParser()
    add_audit_arguments(p)
    args = p.parse_args([str(data), str(probs), "--out", str(tmp_path / "out"), "--top", "5",
                         "--stems", str(stems), "--split", f"train={truth['splits']['train']}",
                         "--split", f"test={truth['splits']['test']}", "--recipe",
                         "kvasir-binary"])
    args.quiet = True
    assert run_audit(args) == 0
    rows = read_audit(tmp_path / "out" / "audit.csv")
    assert sorted(r["image"] for r in rows) == sorted(chosen)
    # the stand-in model's own uncertain flaws may outrank a planted error, not most of them
    assert sum(r["image"] in truth["errors"] for r in rows[:4]) >= 3
    assert (tmp_path / "out" / "flagged.txt").read_text().split() == [r["image"] for r in rows[:5]]


TRAIN_IMAGES, VAL_IMAGES = 200, 40  # Kvasir-SEG images outside the audited set


@pytest.mark.slow
def test_audit_finds_planted_errors_with_a_trained_model(tmp_path, planted):
    """A real small unetkit model (64x64, trained here on Kvasir-SEG images that are not in the
    audited set) judges the planted data set."""
    import torch

    from unetkit.training.fit import fit

    torch.set_num_threads(2)
    data, truth = planted
    root = real_data("kvasir-seg")
    audited = set(truth["original"])
    rng = np.random.default_rng(7)
    others = sorted(p.stem for p in (root / "images").iterdir() if p.stem not in audited)
    picked = rng.choice(others, TRAIN_IMAGES + VAL_IMAGES, replace=False).tolist()
    train_root = tmp_path / "train-data"
    for sub in ("images", "masks"):
        (train_root / sub).mkdir(parents=True)
        for s in picked:
            (train_root / sub / f"{s}.jpg").symlink_to(root / sub / f"{s}.jpg")
    (train_root / "train.txt").write_text("\n".join(picked[:TRAIN_IMAGES]) + "\n")
    (train_root / "val.txt").write_text("\n".join(picked[TRAIN_IMAGES:]) + "\n")
    cfg = config_mod.from_dict({
        "name": "audit-test",
        "model": {"base_channels": 8, "depth": 3},
        "data": {"root": str(train_root), "layout": "kvasir", "classes": BINARY,
                 "image_size": [64, 64], "split": {"train": "train.txt", "val": "val.txt"}},
        "train": {"epochs": 8, "batch_size": 16, "optimizer": "adamw", "lr": 3e-3,
                  "schedule": "cosine", "warmup_epochs": 0.5, "device": "cpu", "samples": 0,
                  "augment": [{"op": "hflip", "p": 0.5}, {"op": "vflip", "p": 0.5}]}})
    run = tmp_path / "run"
    best = fit(cfg, run, progress=False, log=lambda *a: None)
    out = tmp_path / "audit"
    result = audit(data, run, out, splits=truth["splits"], top=30, device="cpu",
                   progress=False, log=lambda *a: None)
    rows = result["rows"]
    r5, r10 = recall_at(rows, truth["errors"], 0.05), recall_at(rows, truth["errors"], 0.10)
    r20 = recall_at(rows, truth["errors"], 0.20)
    kinds = {k: sum(r["image"] in truth["errors"] and truth["kinds"][r["image"]] == k
                    for r in rows[:math.ceil(0.2 * len(rows))]) for k in ("erased", "shifted",
                                                                          "swapped")}
    print(f"trained model (val {best}): recall of {len(truth['errors'])} planted errors in the "
          f"top 5 % {r5:.2f}, 10 % {r10:.2f}, 20 % {r20:.2f}; found in the top 20 %: {kinds}")
    # Measured (val mDice 0.41: a weak model, 8 epochs at 64x64): 0.14, 0.29, 0.48 (chance:
    # 0.05, 0.10, 0.20). Its own misses and false polyps look like label errors, and it finds
    # moved masks best (all 5 in the top 20 %), erased halves less, swapped masks least. The
    # same figures on every run (seeded); 105-190 s on 2 cores shared with other work.
    # A random ranking finds, on average, the share of the errors that the top share holds of
    # all images: chance is len(top) / len(rows). Each floor stands a margin above it (written
    # beside it): the top 5 % must hold more errors than chance (2 of 21 against 1.1), the top
    # 10 % and 20 % at least 0.09 and 0.13 more.
    c5, c10, c20 = (math.ceil(f * len(rows)) / len(rows) for f in (0.05, 0.10, 0.20))
    assert r5 > c5 + 0.04, (r5, c5)
    assert r10 >= c10 + 0.09 and r20 >= c20 + 0.13, (r10, c10, r20, c20)
    check_page(out, rows, truth["errors"])


@pytest.mark.slow
def test_out_of_fold_audit_never_judges_an_image_by_a_model_that_trained_on_it(tmp_path,
                                                                               synthetic_data):
    """folds=2 trains two fold runs (unetkit's --folds) and judges each image by the other."""
    cfg = config_mod.load("demo", overrides=["train.epochs=1", "model.base_channels=4",
                                             "model.depth=2", "data.image_size=[32,32]",
                                             "train.device=cpu", "train.samples=0"])
    out = tmp_path / "audit"
    result = audit(synthetic_data, None, out, cfg=cfg, folds=2, top=5, device="cpu",
                   progress=False, log=lambda *a: None)
    rows = result["rows"]
    assert len(rows) == 48
    for i in (1, 2):
        trained = (out / "folds" / "folds" / f"fold-{i}-train.txt").read_text().split()
        held = set((out / "folds" / "folds" / f"fold-{i}-val.txt").read_text().split())
        for row in rows:
            if row["image"] in trained:
                assert row["judged_by"] != f"fold-{i} (held out)"
            elif row["image"] in held:
                assert row["judged_by"] == f"fold-{i} (held out)"
    # (an image in no fold, e.g. of a test split, would be judged by the two folds together)
    assert all(r["judged_by"] in ("fold-1 (held out)", "fold-2 (held out)",
                                  "2 folds (none trained on it)") for r in rows)
    assert (out / "audit.html").exists() and (out / "folds" / "ensemble.json").exists()


def test_audit_of_colour_masks_flags_the_wrong_class(tmp_path, small_set):
    """NeoPolyp: (K, H, W) probability arrays (stand-ins made from the original masks) that give
    two images' polyps the other class; the audit ranks those two first and says why."""
    data, entries, _ = small_set
    probs = tmp_path / "probs"
    probs.mkdir()
    swapped = {Path(entries[i][0]).stem for i in (2, 7)}
    for name, mask in entries:
        labels = mask.copy()
        if Path(name).stem in swapped:
            labels = np.where(mask > 0, 3 - mask, 0).astype(np.uint8)
        p = np.full((3, *mask.shape), 0.05, np.float32)
        np.put_along_axis(p, labels[None].astype(np.int64), 0.9, axis=0)
        np.save(probs / f"{Path(name).stem}_probs.npy", p.astype(np.float16))
    cfg = config_mod.load("neopolyp-unet3")
    result = audit(data, probs, tmp_path / "audit", cfg=cfg, top=4, progress=False,
                   log=lambda *a: None)
    rows = result["rows"]
    assert {r["image"] for r in rows[:2]} == swapped
    assert all("another class" in r["reasons"] for r in rows[:2])
    assert all(r["class_mismatch"] == 0 for r in rows[2:])
    assert "another class" in html.unescape((tmp_path / "audit" / "audit.html").read_text())


def test_a_run_says_which_audited_images_it_trained_on(tmp_path, planted):
    from unetkit.models.unet import build_model
    from unetkit.runs.folder import save_weights, write_model_card

    data, truth = planted
    cfg = config_mod.load("kvasir-binary", overrides=[
        "model.base_channels=4", "model.depth=2", "data.image_size=[32,32]",
        "data.mean=[0.5,0.5,0.5]", "data.std=[0.5,0.5,0.5]", f"data.root={data}",
        "data.split.train=splits/train.txt", "data.split.val=splits/test.txt"])
    run = tmp_path / "run"
    run.mkdir()
    save_weights(build_model(cfg), run / "model.safetensors")
    write_model_card(run, cfg)
    train = truth["splits"]["train"].read_text().split()[:3]
    test = truth["splits"]["test"].read_text().split()[:3]
    said = []
    result = audit(data, run, tmp_path / "audit", stems=train + test, device="cpu",
                   progress=False, log=said.append)
    judged = {r["image"]: r["judged_by"] for r in result["rows"]}
    assert all(judged[s] == "run (trained on it)" for s in train)
    assert all(judged[s] == "run (held out)" for s in test)
    assert any("3 of 6 images were in the run's training split" in m for m in said)
