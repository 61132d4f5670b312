"""Data folders: layouts, pairing by stem, splits, and every kind of bad input.

Each bad input must be reported by `check-data` (all problems in one pass, exit code 1), and
`train` must refuse it (exit code 2) with a message that names the file and says what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from unetkit import config as config_mod
from unetkit.data.arrays import load_arrays
from unetkit.data.folders import DataError, pair_items, read_stems, resolve_layout
from unetkit.data.pairs import check_data
from unetkit.data.preprocess import Preprocess
from unetkit.data.splits import random_split, split_items
from unetkit.io.images import MaskDecoder


def cfg(*overrides):
    return config_mod.load(overrides=list(overrides))


def write_pair(root: Path, stem: str, images="images", masks="masks", img_ext=".jpg",
               mask_ext=".png", size=(20, 16), mask_size=None, mask_suffix=""):
    """An RGB image and a 0/255 mask with a square lesion; sizes are (width, height)."""
    (root / images).mkdir(parents=True, exist_ok=True)
    (root / masks).mkdir(parents=True, exist_ok=True)
    w, h = size
    img = np.random.default_rng(len(stem)).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(img).save(root / images / f"{stem}{img_ext}")
    mw, mh = mask_size or size
    mask = np.zeros((mh, mw), np.uint8)
    mask[mh // 4: mh // 2, mw // 4: mw // 2] = 255
    Image.fromarray(mask).save(root / masks / f"{stem}{mask_suffix}{mask_ext}")


# --- layouts and pairing -----------------------------------------------------------------------

def test_pairs_by_stem_with_any_extension(tmp_path):
    for stem, ie, me in (("a", ".jpg", ".png"), ("b", ".png", ".bmp"), ("c", ".tif", ".jpg"),
                         ("d", ".JPEG", ".gif")):
        write_pair(tmp_path, stem, img_ext=ie, mask_ext=me)
    (tmp_path / "images" / "notes.txt").write_text("not an image")  # ignored, not a problem
    (tmp_path / "images" / ".hidden.png").write_bytes(b"")
    items, problems = pair_items(tmp_path, cfg().data)
    assert problems == []
    assert [(i.name, i.image.suffix, i.mask.suffix) for i in items] == [
        ("a", ".jpg", ".png"), ("b", ".png", ".bmp"), ("c", ".tif", ".jpg"), ("d", ".JPEG", ".gif")]
    data = load_arrays(items, Preprocess((8, 10), 3, [0.0] * 3, [1.0] * 3),
                       MaskDecoder.from_config(cfg()), progress=False)
    assert data.images.shape == (4, 8, 10, 3) and data.masks.shape == (4, 8, 10)
    assert set(np.unique(data.masks)) == {0, 1}


def test_two_files_with_one_stem_are_refused(tmp_path):
    write_pair(tmp_path, "a")
    write_pair(tmp_path, "a", img_ext=".png")
    with pytest.raises(DataError, match="two files share the stem 'a'"):
        pair_items(tmp_path, cfg().data)


@pytest.mark.parametrize("layout, images, masks, suffix", [
    ("kvasir", "images", "masks", ""),
    ("neopolyp", "train", "train_gt", ""),
    ("carvana", "train", "train_masks", "_mask"),
    ("isbi", "image", "label", ""),
])
def test_layouts_are_detected(tmp_path, layout, images, masks, suffix):
    for stem in ("x1", "x2"):
        write_pair(tmp_path, stem, images, masks, mask_ext=".gif" if suffix else ".png",
                   mask_suffix=suffix)
    if layout == "neopolyp":  # the competition's unlabelled test images sit beside them
        (tmp_path / "test").mkdir()
    found = resolve_layout(tmp_path, cfg().data)
    assert found == (tmp_path / images, tmp_path / masks, suffix)
    assert resolve_layout(tmp_path, cfg(f"data.layout={layout}").data) == found
    items, problems = pair_items(tmp_path, cfg().data)
    assert problems == [] and [i.name for i in items] == ["x1", "x2"]
    assert items[0].mask.name == f"x1{suffix}{'.gif' if suffix else '.png'}"


def test_declared_folders(tmp_path):
    write_pair(tmp_path, "a", "imgs", "gt")
    items, problems = pair_items(tmp_path, cfg("data.images=imgs", "data.masks=gt").data)
    assert problems == [] and items[0].mask == tmp_path / "gt" / "a.png"
    with pytest.raises(DataError, match="give both data.images and data.masks"):
        pair_items(tmp_path, cfg("data.images=imgs").data)


def test_unknown_layout_says_how_to_declare_it(tmp_path):
    write_pair(tmp_path, "a", "pics", "labels")
    with pytest.raises(DataError,
                       match=r"no known layout.*--set data.images=pics data.masks=labels"):
        pair_items(tmp_path, cfg().data)
    with pytest.raises(DataError, match="no such data folder"):
        pair_items(tmp_path / "nowhere", cfg().data)


# --- splits ------------------------------------------------------------------------------------

@pytest.fixture
def ten_items(tmp_path):
    for i in range(10):
        write_pair(tmp_path, f"s{i}", size=(4, 4))
    return pair_items(tmp_path, cfg().data)[0]


def test_split_files(tmp_path, ten_items):
    (tmp_path / "splits").mkdir()
    # stems, or file names (the extension is dropped); blank lines ignored
    (tmp_path / "splits" / "train.txt").write_text("s0\ns1.jpg\n\ns2\n")
    (tmp_path / "val.txt").write_text("s3\ns4\n")
    split = config_mod.SplitConfig(train="splits/train.txt", val=str(tmp_path / "val.txt"))
    parts = split_items(ten_items, tmp_path, split)
    assert [i.name for i in parts["train"]] == ["s0", "s1", "s2"]
    assert [i.name for i in parts["val"]] == ["s3", "s4"]
    assert [i.name for i in parts["test"]] == [f"s{i}" for i in range(5, 10)]
    assert read_stems(tmp_path / "val.txt") == ["s3", "s4"]


def test_split_file_errors(tmp_path, ten_items):
    (tmp_path / "t.txt").write_text("s0\nmissing_one\n")
    (tmp_path / "v.txt").write_text("s0\n")
    (tmp_path / "ok.txt").write_text("s1\n")
    with pytest.raises(DataError, match=r"t.txt: 1 stem with no image\+mask pair .*missing_one"):
        split_items(ten_items, tmp_path, config_mod.SplitConfig(train="t.txt", val="v.txt"))
    (tmp_path / "t.txt").write_text("s0\n")
    with pytest.raises(DataError, match="also in the training split"):
        split_items(ten_items, tmp_path, config_mod.SplitConfig(train="t.txt", val="v.txt"))
    with pytest.raises(DataError, match="data.split.val needs data.split.train"):
        split_items(ten_items, tmp_path, config_mod.SplitConfig(val="ok.txt"))
    with pytest.raises(DataError, match="nothing.txt: no such split file"):
        split_items(ten_items, tmp_path, config_mod.SplitConfig(train="nothing.txt", val="ok.txt"))


def test_a_training_file_alone_keeps_the_rest_as_an_unseen_test_set(tmp_path, ten_items):
    """PraNet's protocol: a file of training stems; validation is a seeded share of them and
    every other item is the test set, never trained or validated on."""
    (tmp_path / "train.txt").write_text("".join(f"s{i}\n" for i in range(8)))
    cfg = config_mod.SplitConfig(train="train.txt", val_fraction=0.25, seed=3)
    parts = {k: sorted(i.name for i in v) for k, v in split_items(ten_items, tmp_path, cfg).items()}
    assert parts["test"] == ["s8", "s9"]
    assert len(parts["val"]) == 2 and len(parts["train"]) == 6
    assert not set(parts["val"]) & set(parts["train"])
    assert parts == {k: sorted(i.name for i in v)
                     for k, v in split_items(ten_items[::-1], tmp_path, cfg).items()}


def test_random_split_is_seeded_and_disjoint(ten_items):
    a = random_split(ten_items, 0.2, 0.1, seed=7)
    b = random_split(list(reversed(ten_items)), 0.2, 0.1, seed=7)  # input order does not matter
    names = {k: [i.name for i in v] for k, v in a.items()}
    assert names == {k: [i.name for i in v] for k, v in b.items()}
    assert (len(names["train"]), len(names["val"]), len(names["test"])) == (7, 2, 1)
    everything = names["train"] + names["val"] + names["test"]
    assert sorted(everything) == sorted(i.name for i in ten_items)
    others = [random_split(ten_items, 0.2, 0.1, seed=s)["val"] for s in range(5)]
    assert len({tuple(i.name for i in v) for v in others}) > 1  # the seed matters
    with pytest.raises(DataError, match="too few to split"):
        random_split(ten_items[:2], 0.5, 0.5, seed=0)


def test_random_split_keeps_groups_together(tmp_path):
    for car in range(6):
        for view in range(4):
            write_pair(tmp_path, f"car{car}_{view:02d}", size=(4, 4))
    items = pair_items(tmp_path, cfg().data)[0]
    parts = random_split(items, 0.34, 0.0, seed=1, group_by=r"^(car\d+)_")
    cars = {k: {i.name.split("_")[0] for i in v} for k, v in parts.items()}
    assert not cars["train"] & cars["val"]
    assert len(parts["val"]) == 8 and len(parts["train"]) == 16


# --- bad input ---------------------------------------------------------------------------------

def broken_folder(root: Path) -> dict[str, str]:
    """A data folder with one good pair and one of each problem; returns the file each problem
    must be reported on, with a word of the fix the message must give."""
    write_pair(root, "good")
    write_pair(root, "no_mask")
    (root / "masks" / "no_mask.png").unlink()
    write_pair(root, "orphan")
    (root / "images" / "orphan.jpg").unlink()
    write_pair(root, "garbage")
    (root / "images" / "garbage.jpg").write_bytes(b"this is not a JPEG at all")
    write_pair(root, "truncated", img_ext=".png", size=(64, 48))
    data = (root / "images" / "truncated.png").read_bytes()
    (root / "images" / "truncated.png").write_bytes(data[: len(data) // 2])
    write_pair(root, "cut_jpeg", size=(64, 48))
    data = (root / "images" / "cut_jpeg.jpg").read_bytes()
    (root / "images" / "cut_jpeg.jpg").write_bytes(data[: len(data) // 2])
    write_pair(root, "wrong_size", mask_size=(10, 8))
    write_pair(root, "grey_mask")
    Image.fromarray(np.full((16, 20), 128, np.uint8)).save(root / "masks" / "grey_mask.png")
    write_pair(root, "index_mask")
    Image.fromarray((np.arange(320).reshape(16, 20) % 2).astype(np.uint8)).save(
        root / "masks" / "index_mask.png")
    return {
        "images/no_mask.jpg": "add it or remove the image",
        "masks/orphan.png": "add the image or remove the mask",
        "images/garbage.jpg": "cannot read this image",
        "images/truncated.png": "cannot read this image",
        "images/cut_jpeg.jpg": "cannot read this image",
        "masks/wrong_size.png": "re-export the mask at the image's size",
        "masks/grey_mask.png": "not a binary mask",
        "masks/index_mask.png": "data.mask_encoding=index",
    }


def assert_all_reported(text: str, root: Path, expected: dict[str, str]) -> None:
    lines = text.splitlines()
    for file, fix in expected.items():
        hits = [line for line in lines if str(root / file) in line]
        assert hits, f"{file} is not reported in:\n{text}"
        assert any(fix in line for line in hits), f"{file}: no '{fix}' in {hits}"
    assert str(root / "images" / "good.jpg") not in text


def test_check_data_lists_every_problem_in_one_pass(tmp_path):
    expected = broken_folder(tmp_path)
    pairs, problems = check_data(tmp_path, cfg(), progress=False)
    assert pairs == 7  # every image with a mask (bad ones included): all were looked at
    assert len(problems) == len(expected)
    assert_all_reported("\n".join(problems), tmp_path, expected)


def test_check_data_cli(tmp_path):
    expected = broken_folder(tmp_path)
    sheet = tmp_path.parent / f"{tmp_path.name}-sheet.png"  # outside the data folder
    proc = run_cli("check-data", str(tmp_path), "--quiet", "--out", str(sheet), check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{len(expected)} problems" in proc.stdout
    assert_all_reported(proc.stdout, tmp_path, expected)

    good = tmp_path / "clean"
    write_pair(good, "a")
    write_pair(good, "b")
    proc = run_cli("check-data", str(good), "--quiet", "--out", str(sheet), check=False)
    assert proc.returncode == 0 and "2 image/mask pairs, no problems found" in proc.stdout


def test_check_data_empty_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    pairs, problems = check_data(tmp_path, cfg(), progress=False)
    assert pairs == 0
    assert problems == [f"{tmp_path / 'images'}: no images (.jpg, .png, ...) in this folder"]
    empty = tmp_path / "nothing"
    empty.mkdir()
    pairs, problems = check_data(empty, cfg(), progress=False)
    assert pairs == 0 and "no known layout" in problems[0]
    proc = run_cli("check-data", str(empty), "--quiet", check=False)
    assert proc.returncode == 1 and "no known layout" in proc.stdout


TRAIN = ("--recipe", "demo", "--set", "data.image_size=[16,16]", "--set", "model.base_channels=4",
         "--set",
         "model.depth=1", "--set", "train.epochs=1", "--set", "data.split.val_fraction=0.5",
         "--quiet")


@pytest.mark.parametrize("problem", ["no_mask", "orphan", "garbage", "wrong_size", "grey_mask",
                                     "empty"])
def test_train_refuses_bad_data_naming_the_file(tmp_path, problem):
    root = tmp_path / "data"
    expected = broken_folder(tmp_path / "all")
    for stem in ("a", "b", "c", "d"):
        write_pair(root, stem)
    if problem == "empty":
        for f in (root / "images").iterdir():
            f.unlink()
        file, fix = root / "images", "no images"
    else:
        file, fix = next((k, v) for k, v in expected.items() if f"/{problem}." in k)
        source = tmp_path / "all" / file
        (root / file).parent.mkdir(exist_ok=True)
        (root / file).write_bytes(source.read_bytes())
        if problem not in ("no_mask", "orphan"):  # copy the pair's other (good) half too
            other = [p for p in (tmp_path / "all").glob(f"*/{problem}.*") if p != source][0]
            (root / other.parent.name / other.name).write_bytes(other.read_bytes())
        file = root / file
    proc = run_cli("train", "--data", str(root), "--out", str(tmp_path / "run"), *TRAIN,
                   check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unetkit train: error:" in proc.stderr
    assert str(file) in proc.stderr and fix in proc.stderr, proc.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_train_lists_several_bad_files_at_once(tmp_path):
    # The runs go beside the data: a run folder inside the folder it reads is refused.
    runs, tmp_path = tmp_path, tmp_path / "data"
    expected = broken_folder(tmp_path)
    proc = run_cli("train", "--data", str(tmp_path), "--out", str(runs / "run"), *TRAIN,
                   check=False)
    assert proc.returncode == 2
    # Unpaired files are found first (the data cannot even be split) and named together.
    assert str(tmp_path / "images/no_mask.jpg") in proc.stderr
    assert str(tmp_path / "masks/orphan.png") in proc.stderr
    assert f"unetkit check-data {tmp_path}" in proc.stderr
    for k in ("images/no_mask.jpg", "masks/orphan.png"):
        (tmp_path / k).unlink()
        del expected[k]
    # The rest are found when the files are decoded: every one of them in one message.
    (tmp_path / "train.txt").write_text("\n".join(Path(k).stem for k in expected) + "\n")
    (tmp_path / "val.txt").write_text("good\n")
    proc = run_cli("train", "--data", str(tmp_path), "--out", str(runs / "run2"), *TRAIN,
                   "--set", "data.split.train=train.txt", "--set", "data.split.val=val.txt",
                   check=False)
    assert proc.returncode == 2
    assert f"{len(expected)} problems" in proc.stderr
    assert_all_reported(proc.stderr, tmp_path, expected)
