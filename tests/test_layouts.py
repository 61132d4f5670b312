"""Data layouts a user brings, made from real images and masks (a few files of Kvasir-SEG and
ISBI 2012 copied into the layout under test) and synthetic ones: detected, stated in one line,
paired; when pairing fails, the error names the `--set` and the whole command to run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import real_data, run_cli
from unetkit import config as config_mod
from unetkit.cli.hints import command_with
from unetkit.data.folders import DataError
from unetkit.data.layouts import find_layout, pair_items
from unetkit.data.splits import split_items


def kvasir_pairs(n: int = 6) -> list[tuple[Path, Path]]:
    root = real_data("kvasir-seg")
    images = sorted((root / "images").glob("*.jpg"))[:n]
    return [(p, root / "masks" / p.name) for p in images]


def isbi_pairs(n: int = 6) -> list[tuple[Path, Path]]:
    root = real_data("isbi2012-em")
    return [(root / "image" / f"{i}.png", root / "label" / f"{i}.png") for i in range(n)]


def to_png(src: Path, dst: Path) -> None:
    Image.open(src).save(dst)


def cfg_for(root, *sets: str, recipe: str | None = None):
    return config_mod.load(recipe, None, list(sets), str(root))


def pairs_of(root, *sets: str, recipe: str | None = None):
    cfg = cfg_for(root, *sets, recipe=recipe)
    return find_layout(Path(root), cfg.data), *pair_items(Path(root), cfg.data)


def test_images_and_masks_with_a_suffix_and_another_extension(tmp_path):
    """images/img.jpg + masks/img_mask.png: the suffix is found, the extension does not matter."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for img, mask in kvasir_pairs():
        shutil.copy(img, tmp_path / "images" / img.name)
        to_png(mask, tmp_path / "masks" / f"{img.stem}_mask.png")
    layout, items, problems = pairs_of(tmp_path)
    assert (layout.suffix, problems, len(items)) == ("_mask", [], 6)
    assert layout.how == "images/ + masks/, masks <stem>_mask.* (detected)"
    assert items[0].mask.name == f"{items[0].name}_mask.png"


@pytest.mark.parametrize("images,masks,suffix", [("imgs", "gt", ""), ("img", "labels", "_seg"),
                                                 ("Images", "Ground_Truth", "_gt"),
                                                 ("inputs", "annotations", "_label"),
                                                 ("x", "y", "_labels"),
                                                 ("scans", "scans_masks", "_segmentation")])
def test_usual_folder_names_and_suffixes(tmp_path, images, masks, suffix):
    (tmp_path / images).mkdir()
    (tmp_path / masks).mkdir()
    (tmp_path / "notes").mkdir()  # a folder with nothing to pair is not mistaken for either
    for img, mask in isbi_pairs():
        shutil.copy(img, tmp_path / images / img.name)
        shutil.copy(mask, tmp_path / masks / f"{mask.stem}{suffix}.png")
    layout, items, problems = pairs_of(tmp_path)
    assert (layout.images.name, layout.masks.name, layout.suffix) == (images, masks, suffix)
    assert (len(items), problems) == (6, [])


def test_a_flat_folder_of_images_with_their_masks_beside_them(tmp_path):
    """im.jpg + im_mask.png side by side: no bogus 'mask with no image' problems."""
    for img, mask in kvasir_pairs():
        shutil.copy(img, tmp_path / img.name)
        to_png(mask, tmp_path / f"{img.stem}_mask.png")
    layout, items, problems = pairs_of(tmp_path)
    assert layout.flat and layout.suffix == "_mask" and problems == []
    assert sorted(it.name for it in items) == sorted(p.stem for p, _ in kvasir_pairs())
    assert "one folder" in layout.how


def test_numbered_frames_in_a_flat_folder_are_not_masks_of_each_other(tmp_path):
    for i in (1, 10, 100):
        Image.new("RGB", (8, 8)).save(tmp_path / f"frame_{i}.png")
    with pytest.raises(DataError, match="no known layout"):
        pairs_of(tmp_path)


def test_a_csv_list_of_pairs_relative_to_the_csv(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deep").mkdir(parents=True)
    lines = ["Image,Mask,comment"]
    for img, mask in kvasir_pairs(4):
        shutil.copy(img, tmp_path / "a" / img.name)
        to_png(mask, tmp_path / "b" / "deep" / f"{img.stem}.png")
        lines.append(f"a/{img.name},b/deep/{img.stem}.png,ok")
    lines.append("a/gone.jpg,b/deep/gone.png,missing")
    table = tmp_path / "pairs.csv"
    table.write_text("\n".join(lines) + "\n")
    layout, items, problems = pairs_of(table)
    assert layout.table == table and len(items) == 4
    assert len(problems) == 1 and "line 6: no image file" in problems[0]
    splits = split_items(items, table, cfg_for(table, "data.split.val_fraction=0.25").data.split)
    assert (len(splits["train"]), len(splits["val"])) == (3, 1)
    r = run_cli("check-data", "--data", "pairs.csv", "--quiet", cwd=tmp_path, check=False)
    assert r.stdout.startswith("pairs.csv: a list of pairs (pairs.csv)")
    assert "contact sheet: check-data-pairs.png" in r.stdout
    assert (tmp_path / "check-data-pairs.png").is_file()


def test_a_csv_without_the_columns_says_which_to_name(tmp_path):
    (tmp_path / "pairs.csv").write_text("a,b\nx.png,y.png\n")
    with pytest.raises(DataError, match=r"pairs.csv: a list of pairs needs an image and a mask "
                                        r"column .*image,mask"):
        pairs_of(tmp_path / "pairs.csv")


def test_train_takes_a_csv_list(tmp_path):
    (tmp_path / "pairs.csv").write_text("image,mask\n")  # header only: refused, clearly
    r = run_cli("train", "--recipe", "demo", "--data", str(tmp_path / "pairs.csv"),
                "--out", str(tmp_path / "run"), "--quiet", check=False)
    assert r.returncode == 2 and "no such data folder" not in r.stderr
    assert "a header and no rows" in r.stderr


def test_a_recipe_layout_not_there_falls_back_to_detection(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "gt").mkdir()
    for img, mask in kvasir_pairs(3):
        shutil.copy(img, tmp_path / "imgs" / img.name)
        to_png(mask, tmp_path / "gt" / f"{img.stem}.png")
    layout, items, problems = pairs_of(tmp_path, recipe="kvasir-binary")
    assert (layout.images.name, layout.masks.name, len(items), problems) == ("imgs", "gt", 3, [])
    assert "the kvasir layout's images/ + masks/ are not there" in layout.how


def test_a_wrong_suffix_names_the_set_that_pairs_them(tmp_path):
    """masks/<stem>_mask.png with a declared suffix that does not fit: the first problem gives
    the exact --set, and the CLI the whole command line with the user's own options kept."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for img, mask in kvasir_pairs(4):
        shutil.copy(img, tmp_path / "images" / img.name)
        to_png(mask, tmp_path / "masks" / f"{img.stem}_mask.png")
    _, items, problems = pairs_of(tmp_path, "data.mask_suffix=_seg")
    assert items == [] and "--set data.mask_suffix=_mask" in problems[0]
    assert problems[0].fix == ("data.mask_suffix=_mask",)
    out = tmp_path.parent / f"{tmp_path.name}-run"  # beside the data: inside it is refused
    r = run_cli("train", "--recipe", "demo", "--data", str(tmp_path), "--set",
                "train.epochs=1", "data.mask_suffix=_seg", "--out", str(out),
                "--quiet", check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()  # the fix first, the same problems grouped
    assert "--set data.mask_suffix=_mask" in lines[1] and len(lines) == 4
    assert lines[-1].split("; run: ")[1] == (
        f"unetkit train --recipe demo --data {tmp_path} --set train.epochs=1 --out "
        f"{out} --quiet --set data.mask_suffix=_mask")


def test_two_suffixes_as_common_are_a_choice_to_make(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for img, mask in isbi_pairs(4):
        shutil.copy(img, tmp_path / "images" / img.name)
        for suffix in ("_seg", "_gt"):
            shutil.copy(mask, tmp_path / "masks" / f"{img.stem}{suffix}.png")
    _, items, problems = pairs_of(tmp_path)
    assert "masks pair with images by two suffixes" in problems[0]
    assert problems[0].fix[0].startswith("data.mask_suffix=_")


def test_two_unknown_folders_are_named_in_the_fix(tmp_path):
    (tmp_path / "scans").mkdir()
    (tmp_path / "outlines").mkdir()
    for img, mask in isbi_pairs(3):
        shutil.copy(img, tmp_path / "scans" / img.name)
        shutil.copy(mask, tmp_path / "outlines" / mask.name)
    with pytest.raises(DataError) as info:
        pairs_of(tmp_path)
    assert info.value.fix == ("data.images=scans", "data.masks=outlines")
    layout, items, problems = pairs_of(tmp_path, *info.value.fix)
    assert (len(items), problems) == (3, [])


def test_missing_split_files_name_the_set_that_drops_them(tmp_path):
    """A recipe's split files that the user's folder lacks: the error says how to drop them,
    and the rebuilt command keeps the recipe."""
    for img, mask in kvasir_pairs(4):
        for sub, src in (("images", img), ("masks", mask)):
            (tmp_path / sub).mkdir(exist_ok=True)
            shutil.copy(src, tmp_path / sub / img.name)
    out = tmp_path.parent / f"{tmp_path.name}-run"  # beside the data: inside it is refused
    r = run_cli("train", "--recipe", "kvasir-binary", "--data", str(tmp_path), "--out",
                str(out), "--quiet", check=False)
    assert r.returncode == 2 and "medico2020-train.txt: no such split file" in r.stderr
    assert (f"; run: unetkit train --recipe kvasir-binary --data {tmp_path} --out "
            f"{out} --quiet --set data.split.train=null data.split.val=null"
            in r.stderr)


def test_the_command_line_keeps_the_users_options_and_replaces_the_fixed_keys():
    argv = ["train", "--config", "my.yaml", "--set", "data.mask_suffix=_x", "train.epochs=3",
            "--set=data.images=a", "--data", "d d"]
    assert command_with(argv, ["data.mask_suffix=_mask", "data.images=b"]) == (
        "unetkit train --config my.yaml --set train.epochs=3 --data 'd d' --set "
        "data.mask_suffix=_mask data.images=b")


def test_train_on_a_flat_folder_states_the_layout(tmp_path):
    """im.jpg + im_mask.png side by side trains as it is, and the run says how it paired them."""
    data = tmp_path / "flat"
    data.mkdir()
    for img, mask in kvasir_pairs(5):
        shutil.copy(img, data / img.name)
        to_png(mask, data / f"{img.stem}_mask.png")
    r = run_cli("train", "--recipe", "demo", "--data", str(data), "--out", str(tmp_path / "run"),
                "--quiet", "--set", "data.image_size=[32,32]", "model.base_channels=4",
                "model.depth=2", "train.epochs=1", "train.batch_size=4", "train.samples=0",
                "data.split.val_fraction=0.2")
    assert (f"data {data}: one folder, images with their masks <stem>_mask.* beside them "
            "(detected)") in r.stdout
    assert "on 4 images, validating on 1" in r.stdout
