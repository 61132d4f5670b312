"""Training defects that each had a test written for them: a rotation that sheared non-square
images, a validation loss that depended on the evaluation batch size, a resumed run's stale
config.json, --set and --data applied in another order for --resume, and a rot90 on non-square
images that failed only at the first batch."""

from __future__ import annotations

import json
import math

import pytest
import torch

from unetkit import config as config_mod
from unetkit.training.augment import affine
from unetkit.training.fit import fit
from unetkit.training.trainer import Trainer


def disk(h: int, w: int, r: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) <= r * r).long()


@pytest.mark.parametrize("h, w", [(48, 96), (96, 40), (64, 64)])
def test_rotation_turns_non_square_images_rigidly(h, w):
    """A disk at the centre, rotated by 30 degrees about the centre, is the same disk. Sheared
    (rotated in [-1, 1] coordinates on a 48x96 image) it becomes a tilted ellipse: IoU ~0.6."""
    mask = disk(h, w, 15)[None]
    img = mask[:, None].float().expand(1, 3, h, w).contiguous()
    gen = torch.Generator().manual_seed(0)
    out_img, out_mask = affine(img, mask, gen, p=1.0, scale=(1, 1), rotate=(30, 30), translate=0)
    inter = (out_mask & mask).sum().item()
    union = (out_mask | mask).sum().item()
    assert inter / union > 0.97, inter / union
    assert abs(out_mask.sum().item() - mask.sum().item()) < 0.03 * mask.sum().item()
    # a quarter turn of a bar along x gives a bar along y of the same length in pixels
    bar = torch.zeros(1, h, w, dtype=torch.long)
    bar[0, h // 2 - 1:h // 2 + 1, w // 2 - 12:w // 2 + 12] = 1
    _, turned = affine(bar[:, None].float(), bar, torch.Generator(), p=1.0, scale=(1, 1),
                       rotate=(90, 90), translate=0)
    rows = turned[0].any(1).nonzero().flatten()
    cols = turned[0].any(0).nonzero().flatten()
    assert (rows.max() - rows.min() + 1).item() == 24 and (cols.max() - cols.min() + 1).item() == 2


def small_cfg(data, *sets):
    return config_mod.load(overrides=[
        "model.base_channels=4", "model.depth=2", "data.image_size=[32, 32]",
        "data.split.val_fraction=0.25", "train.device='cpu'", "train.samples=0",
        "train.epochs=2", "train.batch_size=4", *sets], data_root=str(data))


@pytest.mark.slow
def test_validation_loss_does_not_depend_on_the_eval_batch_size(synthetic_data, tmp_path):
    """Soft Dice summed over a batch differs from its per-image value: the validation loss is
    each image's loss on its own, averaged over images, whatever train.eval_batch_size is."""
    losses, scores = [], []
    for bs in (1, 5, 32):
        trainer = Trainer(small_cfg(synthetic_data, f"train.eval_batch_size={bs}"),
                          tmp_path / f"run{bs}", progress=False, log=lambda m: None)
        trainer.train_epoch()
        s, loss = trainer.validate()
        losses.append(loss)
        scores.append(s["mDice_point"])
    assert losses[0] > 0 and math.isfinite(losses[0])
    assert losses == pytest.approx([losses[0]] * 3, rel=1e-5)
    assert scores == pytest.approx([scores[0]] * 3, abs=1e-6)


def test_resumed_run_writes_its_config_json_at_once(synthetic_data, tmp_path):
    """Resumed with changed settings and no new best epoch, config.json describes the resumed
    run (it used to keep the old settings until a better epoch came)."""
    run = tmp_path / "run"
    fit(small_cfg(synthetic_data), run, progress=False, log=lambda m: None)
    card = json.loads((run / "config.json").read_text())
    assert card["config"]["train"]["threshold"] == 0.5
    # the same epochs: nothing trains, so no new best could rewrite the card
    fit(small_cfg(synthetic_data, "train.threshold=0.3"), run, resume=True, progress=False,
        log=lambda m: None)
    resumed = json.loads((run / "config.json").read_text())
    assert resumed["config"]["train"]["threshold"] == 0.3 and resumed["threshold"] == 0.3
    assert resumed["metrics"] == card["metrics"] and resumed["metrics"]["epoch"] >= 1


def test_set_and_data_apply_in_the_same_order_for_new_and_resumed_runs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(config_mod.to_yaml(config_mod.load()))
    sets = ["data.root='/from/set'"]
    new = config_mod.for_training("demo", overrides=sets, data_root="/from/data")
    resumed = config_mod.for_training(overrides=sets, data_root="/from/data", resume=run)
    assert new.data.root == resumed.data.root == "/from/set"  # --set is applied last
    assert config_mod.for_training(resume=run, data_root="/d").data.root == "/d"
    with pytest.raises(config_mod.ConfigError, match="drop --recipe"):
        config_mod.for_training("demo", resume=run)


def test_rot90_with_a_non_square_size_fails_before_training_reads_data():
    from unetkit.training.checks import check_training

    cfg = config_mod.load(overrides=["data.image_size=[32, 48]", "train.augment=[{'op': 'rot90'}]"])
    with pytest.raises(config_mod.ConfigError, match="rot90.*square data.image_size"):
        check_training(cfg)
    cfg = config_mod.load(overrides=["data.image_size=[32, 48]", "train.augment=[{'op': 'hflip'}]"])
    check_training(cfg)
    assert cfg.train.augment == [{"op": "hflip"}]
