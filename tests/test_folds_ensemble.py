"""k-fold cross-validation (grouped folds, out-of-fold scores) and ensembles of runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from unetkit import config as config_mod
from unetkit.data.folders import Item
from unetkit.data.splits import fold_splits
from unetkit.inference.predictor import Predictor
from unetkit.models.unet import build_model
from unetkit.runs.ensemble import EnsembleModel
from unetkit.runs.folder import RunError, save_weights, write_model_card
from unetkit.runs.loading import load_model


def video_items(sizes: list[int]) -> list[Item]:
    return [Item(f"video{g:02d}_frame{j:03d}", Path(f"{g}-{j}.jpg"), Path(f"{g}-{j}.png"))
            for g, n in enumerate(sizes) for j in range(n)]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_never_split_a_group_and_cover_everything(k):
    sizes = [1, 30, 7, 7, 2, 12, 5, 5, 9, 3, 18, 4, 6]
    items = video_items(sizes)
    folds = fold_splits(items, k, seed=3, group_by=r"^(video\d+)_")
    names = [it.name for fold in folds for it in fold]
    assert sorted(names) == sorted(it.name for it in items)  # each image in exactly one fold
    group_fold = {}
    for i, fold in enumerate(folds):
        for it in fold:
            group = it.name.split("_")[0]
            assert group_fold.setdefault(group, i) == i, f"{group} is in two folds"
    lengths = [len(f) for f in folds]
    assert max(lengths) - min(lengths) <= max(sizes)  # as even as whole groups allow
    # A table joining groups keeps the larger groups whole too.
    table = {f"video{g:02d}": "site-a" if g % 2 else f"video{g:02d}" for g in range(len(sizes))}
    joined = fold_splits(items, 2, seed=0, group_by=r"^(video\d+)_", table=table)
    odd = [i for i, f in enumerate(joined) for it in f if int(it.name[5:7]) % 2]
    assert len(set(odd)) == 1
    assert fold_splits(items, k, seed=3, group_by=r"^(video\d+)_") == folds  # seeded


def test_too_few_groups_for_the_folds():
    from unetkit.data.folders import DataError

    with pytest.raises(DataError, match="too few for 5 folds"):
        fold_splits(video_items([3, 3]), 5, group_by=r"^(video\d+)_")


def make_run(folder: Path, seed: int, classes: list[str], mean: list[float], std: list[float]):
    values = {"model": {"base_channels": 4, "depth": 2},
              "data": {"classes": classes, "image_size": [32, 32], "mean": mean, "std": std,
                       "mask_encoding": "binary" if len(classes) == 2 else "index"}}
    cfg = config_mod.from_dict(values)
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    folder.mkdir(parents=True)
    save_weights(model, folder / "model.safetensors")
    write_model_card(folder, cfg)


@pytest.mark.parametrize("classes", [["background", "polyp"], ["background", "a", "b"]])
def test_ensemble_probabilities_are_the_mean_of_the_members(tmp_path, classes):
    make_run(tmp_path / "a", 0, classes, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    make_run(tmp_path / "b", 1, classes, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    ens = tmp_path / "ens"
    ens.mkdir()
    (ens / "ensemble.json").write_text(json.dumps({"members": ["../a", str(tmp_path / "b")]}))
    model = load_model(ens)
    assert isinstance(model, EnsembleModel) and len(model.members) == 2

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
              rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)]
    ours = Predictor.from_run(ens).probabilities(images)
    members = [Predictor.from_run(tmp_path / m).probabilities(images) for m in ("a", "b")]
    for i in range(len(images)):
        mean = (members[0][i] + members[1][i]) / 2
        assert ours[i].shape == mean.shape
        assert torch.allclose(ours[i], mean, atol=1e-5)
        assert not torch.allclose(members[0][i], members[1][i], atol=1e-3)  # they differ
    labels = Predictor.from_run(ens).predict(images)
    assert labels[0].shape == (40, 50)


def test_ensemble_of_other_classes_or_missing_members_fails_clearly(tmp_path):
    make_run(tmp_path / "a", 0, ["background", "polyp"], [0.5] * 3, [0.5] * 3)
    make_run(tmp_path / "b", 1, ["background", "a", "b"], [0.5] * 3, [0.5] * 3)
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": ["a", "b"]}))
    with pytest.raises(RunError, match="other classes"):
        load_model(tmp_path)
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": ["a", "nowhere"]}))
    with pytest.raises(RunError, match="not run folders: .*nowhere"):
        load_model(tmp_path)


@pytest.mark.slow
def test_train_folds_end_to_end(synthetic_data, tmp_path):
    """`train --folds 2` on 48 synthetic images: two runs, each image scored once out of fold,
    and the fold set evaluates as one model."""
    out = tmp_path / "cv"
    run_cli("train", "--recipe", "demo", "--data", str(synthetic_data), "--out", str(out),
            "--folds", "2", "--quiet", "--set", "train.epochs=1", "model.base_channels=4",
            "model.depth=2", "data.image_size=[32, 32]", "train.samples=0", "train.device=cpu")
    report = json.loads((out / "folds.json").read_text())
    assert [f["images"] for f in report["folds"]] == [24, 24]
    assert report["out_of_fold"]["images"] == 48
    mdice = sum(f["mDice_point"] * f["images"] for f in report["folds"]) / 48
    assert report["out_of_fold"]["mDice_point"] == pytest.approx(mdice)
    vals = [set((out / "folds" / f"fold-{i}-val.txt").read_text().split()) for i in (1, 2)]
    assert not vals[0] & vals[1] and len(vals[0] | vals[1]) == 48
    train1 = set((out / "folds" / "fold-1-train.txt").read_text().split())
    assert train1 == vals[1]
    assert json.loads((out / "ensemble.json").read_text()) == {"members": ["fold-1", "fold-2"]}
    scores = tmp_path / "ens.json"
    run_cli("evaluate", str(out), "--data", str(synthetic_data), "--split", "all", "--json",
            str(scores), "--quiet")
    assert json.loads(scores.read_text())["images"] == 48
    # Run again: both folds have finished and are kept, not trained again.
    again = run_cli("train", "--recipe", "demo", "--data", str(synthetic_data), "--out", str(out),
                    "--folds", "2", "--set", "train.epochs=1", "model.base_channels=4",
                    "model.depth=2", "data.image_size=[32, 32]", "train.samples=0",
                    "train.device=cpu")
    assert again.stdout.count("has finished; kept") == 2
    bad = run_cli("train", "--recipe", "demo", "--resume", str(out), "--folds", "2", check=False)
    assert bad.returncode == 2 and "without --resume" in bad.stderr
