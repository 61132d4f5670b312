"""What a run costs and says: one checkpoint once finished, the parameter count at the start,
counts in the right number, a description that admits `--set`, a model card with one size
order and whole epochs, and ONNX models written where `predict --backend onnx` looks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from run_fixtures import make_run
from unetkit import config as config_mod
from unetkit.core.text import plural
from unetkit.data.synthetic import write_dataset
from unetkit.models.unet import build_model
from unetkit.training.checkpoints import read_checkpoint
from unetkit.training.fit import fit

TINY = ["model.base_channels=4", "model.depth=2", "data.image_size=[32,48]", "train.epochs=2",
        "train.batch_size=4", "train.device='cpu'", "train.samples=0",
        "data.split.val_fraction=0.25"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("costs"), count=12, size=32)


def test_a_finished_run_keeps_one_checkpoint_and_says_its_parameter_count(data, tmp_path):
    cfg = config_mod.load(overrides=TINY, data_root=str(data))
    said = []
    fit(cfg, tmp_path / "run", progress=False, log=said.append)
    count = sum(p.numel() for p in build_model(cfg).parameters())
    training = [line for line in said if line.startswith("training ")]
    assert len(training) == 1, said  # after the line that states the data's layout
    assert f"({count:,} parameters)" in training[0], training[0]
    assert ", 2 epochs," in training[0]
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt"]
    # what it kept is enough to go on: resumed with more epochs, from last.pt
    fit(config_mod.load(overrides=[*TINY, "train.epochs=3"], data_root=str(data)),
        tmp_path / "run", resume=True, progress=False, log=said.append)
    assert read_checkpoint(checkpoints / "last.pt")["epoch"] == 3
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt"]


def test_a_damaged_last_checkpoint_keeps_the_one_before_at_the_end(tmp_path):
    from unetkit.training.checkpoints import keep_last_only, save_checkpoint

    folder = tmp_path / "checkpoints"
    save_checkpoint(folder, {"model": {}, "epoch": 1})
    save_checkpoint(folder, {"model": {}, "epoch": 2})
    (folder / "last.pt").write_bytes(b"cut short")
    keep_last_only(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "previous.pt"]


def test_counts_are_in_the_right_number(synthetic_data, tmp_path):
    assert [plural(n, "problem") for n in (0, 1, 2)] == ["0 problems", "1 problem", "2 problems"]
    assert plural(1, "class", "classes") == "1 class" and plural(3, "class", "classes") == \
        "3 classes"
    folder = tmp_path / "data"
    shutil.copytree(synthetic_data, folder)
    next((folder / "masks").iterdir()).unlink()  # one image without its mask: one problem
    res = run_cli("check-data", str(folder), check=False)
    assert res.returncode == 1
    assert "47 image/mask pairs, 1 problem:" in res.stdout, res.stdout
    assert "1 problems" not in res.stdout + res.stderr


def test_the_description_says_which_keys_set_changed(tmp_path):
    plain = config_mod.load("demo").description
    cfg = config_mod.load("demo", overrides=["train.epochs=2", "data.image_size=[48, 48]"])
    assert cfg.description == (f"{plain} [changed with --set: train.epochs=2; "
                               "data.image_size=[48, 48]]")
    # a resumed run (its config.yaml) keeps the earlier changes; a key set again shows its new
    # value
    saved = tmp_path / "config.yaml"
    saved.write_text(config_mod.to_yaml(cfg))
    again = config_mod.load(file=str(saved), overrides=["train.epochs=5"])
    assert again.description == (f"{plain} [changed with --set: train.epochs=5; "
                                  "data.image_size=[48, 48]]")
    assert config_mod.load(file=str(saved)).description == cfg.description
    mine = config_mod.load("demo", overrides=["train.epochs=2", "description=my own words"])
    assert mine.description == "my own words"


def test_the_hub_card_gives_whole_epochs_and_width_x_height_like_the_page(tmp_path):
    from unetkit.deploy.export import model_card_markdown
    from unetkit.deploy.page import ModelPage
    from unetkit.runs.check import read_model_card, run_config
    from unetkit.runs.folder import write_model_card

    run = make_run(tmp_path / "run", TINY)  # image_size [32, 48]: 32 high, 48 wide
    write_model_card(run, run_config(run), {"epoch": 5, "split": "val", "mDice_point": 0.5})
    card = model_card_markdown(read_model_card(run))
    assert "| epoch | 5 |" in card and "| mDice_point | 0.5000 |" in card
    assert "resized to 48x32 (width x height)" in card
    page = ModelPage(run, "cpu")
    try:
        assert "48x32 (width x height)" in page.describe()
    finally:
        page.close()


def test_export_onnx_without_out_writes_where_predict_looks(tmp_path, synthetic_data):
    pytest.importorskip("onnxruntime")
    run = make_run(tmp_path / "run", TINY)
    image = next((synthetic_data / "images").iterdir())
    missing = run_cli("predict", str(run), str(image), "--out", str(tmp_path / "a"),
                      "--backend", "onnx", check=False)
    assert missing.returncode != 0
    assert f"unetkit export {run} --format onnx` (it writes {run / 'model.onnx'})" in \
        missing.stderr
    elsewhere = run_cli("export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert "leave --out out to write it there" in elsewhere.stdout
    done = run_cli("export", str(run), "--format", "onnx")
    assert f"wrote {run / 'model.onnx'} " in done.stdout and (run / "model.onnx").exists()
    run_cli("predict", str(run), str(image), "--out", str(tmp_path / "b"), "--backend", "onnx")
    assert (tmp_path / "b" / f"{image.stem}.png").exists()
    hub = run_cli("export", str(run), "--format", "hub", check=False)
    assert hub.returncode != 0 and "--format hub needs --out" in hub.stderr
