"""Carvana: the split by car (and make), the competition's run-length encoding, the submission."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from unetkit import config as config_mod
from unetkit.data.folders import DataError, pair_items
from unetkit.data.splits import resolve_split
from unetkit.deploy.submit import rle_decode, rle_encode
from unetkit.inference.predictor import Predictor
from unetkit.io.images import MaskDecoder, read_image, read_mask

HEIGHT, WIDTH = 1280, 1918  # Carvana's photos

MAKES = ["Audi", "BMW", "Ford", "Honda", "Kia"]


def _car_photo(rng, h, w, view):
    """A photo-like picture of a 'car' (a dark ellipse) on a light background, and its mask."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h * (0.5 + 0.1 * np.sin(view)), w * (0.5 + 0.1 * np.cos(view))
    mask = ((yy - cy) / (h * 0.3)) ** 2 + ((xx - cx) / (w * 0.35)) ** 2 < 1
    img = rng.integers(170, 230, (h, w, 3)).astype(np.uint8)
    img[mask] = rng.integers(20, 80, (int(mask.sum()), 3)).astype(np.uint8)
    return img, mask


def write_carvana(root, cars=10, size=(24, 36), metadata=True, test_images=0):
    """Kaggle's layout: train/<car>_<NN>.jpg, train_masks/<car>_<NN>_mask.gif (palette 0/1),
    train_masks.csv (img,rle_mask), metadata.csv (id,year,make,model,trim1,trim2), test/*.jpg."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    rows, meta = [], []
    for c in range(cars):
        car = f"{rng.integers(16**11, 16**12):012x}"
        meta.append([car, 2014, MAKES[c % len(MAKES)], f"model{c}", "", ""])
        for view in range(1, 17):
            img, mask = _car_photo(rng, *size, view)
            Image.fromarray(img).save(root / "train" / f"{car}_{view:02d}.jpg", quality=95)
            gif = Image.fromarray(mask.astype(np.uint8), mode="P")
            gif.putpalette([0, 0, 0, 255, 255, 255])
            gif.save(root / "train_masks" / f"{car}_{view:02d}_mask.gif")
            rows.append([f"{car}_{view:02d}.jpg", rle_encode(mask)])
    with (root / "train_masks.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["img", "rle_mask"], *rows])
    if metadata:
        with (root / "metadata.csv").open("w", newline="") as f:
            csv.writer(f).writerows([["id", "year", "make", "model", "trim1", "trim2"], *meta])
    if test_images:
        (root / "test").mkdir()
        for i in range(test_images):
            img, _ = _car_photo(rng, HEIGHT, WIDTH, i)
            Image.fromarray(img).save(root / "test" / f"{'f' * 11}{i}_{i + 1:02d}.jpg", quality=90)
    return root


def test_rle_matches_the_competition_definition():
    # 3x5 mask, row-major, 1-indexed: "1 3 10 5" covers pixels 1-3 and 10-14.
    mask = np.zeros((3, 5), np.uint8)
    mask.flat[[0, 1, 2, 9, 10, 11, 12, 13]] = 1
    assert rle_encode(mask) == "1 3 10 5"
    assert (rle_decode("1 3 10 5", (3, 5)) == mask).all()
    assert rle_encode(np.zeros((3, 5))) == ""
    assert rle_encode(np.ones((3, 5))) == "1 15"
    with pytest.raises(ValueError):
        rle_decode("14 5", (3, 5))


def test_rle_round_trips_at_full_size():
    rng = np.random.default_rng(1)
    _, car = _car_photo(rng, HEIGHT, WIDTH, 3)
    noisy = car ^ (rng.random((HEIGHT, WIDTH)) < 0.001)
    for mask in (car, noisy, np.zeros((HEIGHT, WIDTH), bool), np.ones((HEIGHT, WIDTH), bool)):
        rle = rle_encode(mask)
        assert (rle_decode(rle, (HEIGHT, WIDTH)) == mask).all()


def _car(item):
    return item.name.rsplit("_", 1)[0]


def test_split_keeps_cars_and_makes_whole(tmp_path):
    root = write_carvana(tmp_path / "carvana", cars=10)
    cfg = config_mod.load("carvana", data_root=str(root))
    items, problems = pair_items(root, cfg.data)
    assert len(items) == 160 and not problems  # GIF masks paired through the _mask suffix
    # The layout's train_masks.csv and the GIFs agree (the GIFs decode as the competition's masks).
    rle = dict(csv.reader((root / "train_masks.csv").open()))
    decoder = MaskDecoder.from_config(cfg)
    for it in items[:5]:
        assert (read_mask(it.mask, decoder) == rle_decode(rle[it.image.name], (24, 36))).all()
    make = {row["id"]: row["make"] for row in csv.DictReader((root / "metadata.csv").open())}
    train, val = resolve_split(cfg, root, "train"), resolve_split(cfg, root, "val")
    assert len(train) + len(val) == 160 and len(val) % 16 == 0 and val
    assert not {_car(i) for i in train} & {_car(i) for i in val}
    assert not {make[_car(i)] for i in train} & {make[_car(i)] for i in val}
    # metadata.csv named but not there: an error, never a split that ignores makes silently.
    (root / "metadata.csv").unlink()
    with pytest.raises(DataError, match="metadata.csv"):
        resolve_split(cfg, root, "train")
    # Without a group table the split still never divides a car.
    cfg.data.split.group_table = cfg.data.split.group_column = None
    train, val = resolve_split(cfg, root, "train"), resolve_split(cfg, root, "val")
    assert not {_car(i) for i in train} & {_car(i) for i in val}
    assert {len([i for i in val if _car(i) == c]) for c in {_car(i) for i in val}} == {16}


@pytest.mark.slow
def test_carvana_recipe_trains_and_submits(tmp_path):
    root = write_carvana(tmp_path / "carvana", cars=5, test_images=2)
    run = tmp_path / "run"
    run_cli("train", "--recipe", "carvana", "--data", str(root), "--out", str(run), "--quiet",
            "--set", "data.image_size=[24, 36]", "--set", "model.base_channels=4",
            "--set", "model.depth=2", "--set", "train.epochs=1", "--set", "train.samples=0")
    out = tmp_path / "submission.csv"
    run_cli("submit", str(run), "--data", str(root), "--format", "carvana", "--out", str(out))
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["img", "rle_mask"]
    files = sorted((root / "test").glob("*.jpg"))
    assert [r[0] for r in rows[1:]] == [f.name for f in files]
    predictor = Predictor.from_run(run, "cpu")
    for (_, rle), path in zip(rows[1:], files, strict=False):
        expected = predictor.predict([read_image(path)])[0]
        assert expected.shape == (HEIGHT, WIDTH)
        assert (rle_decode(rle, (HEIGHT, WIDTH)) == expected).all()
