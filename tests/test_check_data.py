"""`unetkit check-data` shows and advises: a short report on real data copied into tmp folders
(NeoPolyp's colour masks without their recipe, Kvasir-SEG under a recipe whose split files are
not there, ISBI's few slices), the masks' encoding and the setting that reads it, problems of
one kind on one line, the contact sheet, and the command that applies the advice."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import real_data, run_cli
from unetkit.data.sheet import TILE


def copy_pairs(src: Path, images: str, masks: str, dst: Path, n: int) -> Path:
    for sub in (images, masks):
        (dst / sub).mkdir(parents=True)
    for path in sorted((src / images).iterdir())[:n]:
        shutil.copy(path, dst / images / path.name)
        shutil.copy(src / masks / path.name, dst / masks / path.name)
    return dst


@pytest.fixture(scope="module")
def neopolyp30(tmp_path_factory) -> Path:
    return copy_pairs(real_data("bkai-igh-neopolyp"), "train", "train_gt",
                      tmp_path_factory.mktemp("neo") / "mine", 30)


def report(*args: str) -> tuple[int, list[str]]:
    r = run_cli("check-data", *args, "--quiet", check=False)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout.splitlines()


def test_colour_masks_without_their_recipe_make_a_short_report(neopolyp30, tmp_path):
    """It printed one line per mask ('looks like a 0/1 index mask'): now one line for the 30,
    the colours found and what reads them, and the whole command to run."""
    sheet = tmp_path / "sheet.png"
    code, lines = report(str(neopolyp30), "--out", str(sheet))
    assert code == 1 and len(lines) <= 10, lines
    text = "\n".join(lines)
    assert "train/ + train_gt/, masks the same stems (detected)" in lines[0]
    assert "30 files: a colour mask read as grey" in text
    encoding = next(line for line in lines if line.startswith("masks: colours black"))
    assert "red" in encoding and "green" in encoding and "--recipe neopolyp-unet3" in encoding
    assert lines[-1] == (f"run: unetkit check-data {neopolyp30} --out {sheet} --quiet --set "
                         "data.mask_encoding=color 'data.classes=[background,red,green]' "
                         "'data.class_colors=[[0,0,0],[255,0,0],[0,255,0]]'")
    img = Image.open(sheet)
    assert img.height == 40 + 4 * (TILE + 20) and img.width >= 3 * TILE
    # The masks decoded as grey: the red and green polyps are lost (all black) on some rows.
    arr = np.asarray(img.convert("RGB"))
    assert arr.std() > 20


def test_the_advice_applied_reads_them(neopolyp30, tmp_path):
    code, lines = report(str(neopolyp30), "--out", str(tmp_path / "s.png"), "--set",
                         "data.mask_encoding=color", "data.classes=[background,red,green]",
                         "data.class_colors=[[0,0,0],[255,0,0],[0,255,0]]")
    assert code == 0 and "the configuration reads them" in "\n".join(lines)
    assert lines[-1] == f"{neopolyp30}: 30 image/mask pairs, no problems found"
    sheet = np.asarray(Image.open(tmp_path / "s.png").convert("RGB")).reshape(-1, 3)
    assert ((sheet == [255, 0, 0]).all(1).sum() > 100) and ((sheet == [0, 255, 0]).all(1).sum()
                                                            > 100)


def test_a_recipes_split_files_that_are_not_there(tmp_path):
    """check-data said 'no problems' and train then failed on splits/medico2020-train.txt."""
    data = copy_pairs(real_data("kvasir-seg"), "images", "masks", tmp_path / "polyps", 5)
    code, lines = report(str(data), "--recipe", "kvasir-binary", "--out", str(tmp_path / "s.png"))
    text = "\n".join(lines)
    assert code == 1 and "medico2020-train.txt: no such split file" in text
    assert "masks: grey 0/255" in text and "data.mask_encoding=binary reads them" in text
    assert lines[-1] == (f"run: unetkit check-data {data} --recipe kvasir-binary --out "
                         f"{tmp_path / 's.png'} --quiet --set data.split.train=null "
                         "data.split.val=null")


def test_a_small_validation_set_is_warned_of(tmp_path):
    data = copy_pairs(real_data("isbi2012-em"), "image", "label", tmp_path / "em", 12)
    code, lines = report(str(data), "--recipe", "isbi-greyscale", "--out", str(tmp_path / "s.png"))
    assert code == 0
    assert "split: 10 train, 2 val, 0 test (random, val_fraction 0.2, seed 42)" in lines
    warning = next(line for line in lines if line.startswith("warning: validation holds 2"))
    assert "--folds 5" in warning


def test_index_masks_are_named_with_the_setting_that_reads_them(tmp_path):
    for sub in ("images", "labels"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(
            tmp_path / "d" / "images" / f"{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[:10], mask[20:] = 1, 2
        Image.fromarray(mask).save(tmp_path / "d" / "labels" / f"{i}_label.png")
    code, lines = report(str(tmp_path / "d"), "--out", str(tmp_path / "s.png"))
    text = "\n".join(lines)
    assert "masks <stem>_label.*" in lines[0]
    assert "masks: class indices 0..2" in text
    assert lines[-1].endswith("--set data.mask_encoding=index "
                              "'data.classes=[background,class1,class2]'")


def test_the_contact_sheet_never_goes_into_the_data_folder(tmp_path):
    data = copy_pairs(real_data("isbi2012-em"), "image", "label", tmp_path / "em", 3)
    before = sorted(p.name for p in data.rglob("*"))
    r = run_cli("check-data", ".", "--quiet", cwd=data, check=False)
    assert "no contact sheet: the current folder is inside" in r.stdout
    r = run_cli("check-data", str(data), "--out", str(data / "image" / "x.png"), "--quiet",
                check=False)
    assert r.returncode == 2 and "inside the input folder" in r.stderr
    assert sorted(p.name for p in data.rglob("*")) == before
