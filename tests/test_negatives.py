"""Negative frames: folders of images without masks, their split, their masks, their share of
each batch, and training on them (binary and multi-class)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from unetkit import config as config_mod
from unetkit.data.arrays import load_arrays, prepare_data
from unetkit.data.folders import DataError, pair_items
from unetkit.data.negatives import BatchPlan, negative_folders, negative_mask, negative_splits
from unetkit.data.preprocess import Preprocess
from unetkit.io.images import MaskDecoder
from unetkit.training.trainer import Trainer


def write_set(root, n=12, size=24, masks=True, seed=0, index=False):
    """Random images; masks 0/255 (binary) or, with `index`, class indices 1 and 2."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    if masks:
        (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            root / "images" / f"{i}.png")
        if masks:
            mask = np.zeros((size, size), np.uint8)
            mask[4:12, 4:12] = 1 + i % 2 if index else 255
            Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def cfg_for(root, *overrides):
    return config_mod.load(None, None, ["data.image_size=[16,16]",
                                        "model.base_channels=4", "model.depth=1",
                                        "train.batch_size=4", "train.epochs=1",
                                        "train.samples=0", *overrides], str(root))


def test_negative_folders_resolve_beside_the_data_and_fail_clearly(tmp_path):
    write_set(tmp_path / "polyps")
    write_set(tmp_path / "free", n=10, masks=False)
    cfg = cfg_for(tmp_path / "polyps", "data.negatives=[free/images]")
    assert negative_folders(tmp_path / "polyps", cfg.data) == [tmp_path / "free" / "images"]
    cfg = cfg_for(tmp_path / "polyps", "data.negatives=[nowhere]")
    with pytest.raises(DataError, match="data.negatives: no folder .*nowhere"):
        negative_folders(tmp_path / "polyps", cfg.data)


def test_negative_split_is_seeded_disjoint_and_only_negatives_train(tmp_path):
    write_set(tmp_path / "polyps")
    write_set(tmp_path / "free", n=10, masks=False)
    cfg = cfg_for(tmp_path / "polyps", "data.negatives=[free/images]",
                  "data.negative_val_fraction=0.3", "data.split.val_fraction=0.25")
    parts = negative_splits(tmp_path / "polyps", cfg.data)
    assert (len(parts["train"]), len(parts["val"])) == (7, 3)
    assert not {i.name for i in parts["train"]} & {i.name for i in parts["val"]}
    assert all(i.name.startswith("free_") and i.mask is None for i in parts["train"])
    assert parts == negative_splits(tmp_path / "polyps", cfg.data)  # same images every time
    cfg.data.mean, cfg.data.std = [0.0] * 3, [1.0] * 3
    train, val = prepare_data(cfg, Preprocess.from_config(cfg), progress=False)
    assert len(train) == 9 + 7 and len(val) == 3  # the 3 validation negatives are not in val
    assert negative_mask(train.masks).sum() == 7
    assert negative_mask(val.masks).sum() == 0


def test_image_without_mask_is_negative_only_when_allowed(tmp_path):
    root = write_set(tmp_path / "d", n=6)
    (root / "masks" / "0.png").unlink()
    items, problems = pair_items(root, cfg_for(root).data)
    assert len(items) == 5 and "no mask '0.*'" in problems[0]
    cfg = cfg_for(root, "data.missing_masks=negative")
    items, problems = pair_items(root, cfg.data)
    assert not problems and [i.name for i in items if i.mask is None] == ["0"]
    cache = tmp_path / "cache"
    for _ in range(2):  # decoded, then read back from the cache
        data = load_arrays(items, Preprocess((16, 16), 3, [0.0] * 3, [1.0] * 3),
                           MaskDecoder.from_config(cfg), str(cache), progress=False)
        assert data.masks[data.names.index("0")].max() == 0
        assert negative_mask(data.masks).tolist() == [n == "0" for n in data.names]
    assert len(list(cache.glob("*-masks.npy"))) == 1


def test_check_data_counts_negative_frames(tmp_path):
    root = write_set(tmp_path / "d", n=6)
    (root / "masks" / "0.png").unlink()
    write_set(tmp_path / "free", n=5, masks=False)
    (tmp_path / "free" / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    proc = run_cli("check-data", str(root), "--set", "data.missing_masks=negative",
                   "data.negatives=[free/images]", "--quiet", "--out", str(tmp_path / "s.png"),
                   check=False)
    assert "1 image without a mask (negative frames)" in proc.stdout
    assert "6 negative frames in" in proc.stdout  # 5 images + the broken one, which is reported
    assert "broken.jpg" in proc.stdout and proc.returncode == 1


def test_batch_plan_gives_each_batch_its_share_of_negatives():
    negative = np.array([False] * 20 + [True] * 6)
    plan = BatchPlan(negative, batch_size=8, fraction=0.25)
    assert plan.per_batch == 2 and plan.steps == 20 // 6
    gen = torch.Generator().manual_seed(0)
    order = plan.order(gen).view(plan.steps, 8)
    assert negative[order[:, :6]].sum() == 0 and negative[order[:, 6:]].all()
    assert len(set(order[:, :6].flatten().tolist())) == 18  # positives: each at most once
    drawn = order[:, 6:].flatten().tolist()  # 6 negatives drawn: the whole cycle, once each
    assert sorted(drawn) == list(range(20, 26))
    again = plan.order(torch.Generator().manual_seed(0))
    assert torch.equal(again, order.flatten())  # the generator alone decides (resumable)
    plain = BatchPlan(negative, batch_size=8, fraction=None)
    assert plain.steps == 26 // 8 and sorted(plain.order(gen).tolist()) == list(range(26))
    with pytest.raises(DataError, match="no negative frame"):
        BatchPlan(np.zeros(10, bool), 4, 0.5)


@pytest.mark.parametrize("classes", [2, 3])
def test_training_with_negatives_binary_and_multiclass(tmp_path, classes):
    write_set(tmp_path / "polyps", index=classes == 3)
    write_set(tmp_path / "free", n=8, masks=False)
    extra = [] if classes == 2 else ["data.classes=[background, a, b]", "data.mask_encoding=index"]
    cfg = cfg_for(tmp_path / "polyps", "data.negatives=[free/images]",
                  "data.negative_fraction=0.5", "train.device=cpu", *extra)
    trainer = Trainer(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    assert trainer.plan.per_batch == 2
    seen = []
    real = trainer.batch
    def batch(x, y, idx, augment):  # records each batch's frames' largest class
        seen.append(y[idx].flatten(1).amax(1))
        return real(x, y, idx, augment)

    trainer.batch = batch
    trainer.fit()
    assert (trainer.run_dir / "model.safetensors").exists()
    per_batch = [(b == 0).sum().item() for b in seen[:trainer.steps_per_epoch]]
    assert per_batch == [2] * trainer.steps_per_epoch
    assert int(trainer.train_y.max()) == classes - 1
