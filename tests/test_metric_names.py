"""One name per number (core.metric_names): bare mDice / mIoU are only the literature's
256-threshold values; the operating point's per-image means are mDice_point / mIoU_point
everywhere; old run folders keep loading. And `evaluate` says what it scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"  # written with the old names


def test_an_old_run_folder_reads_its_point_scores_under_the_new_names():
    from unetkit.runs.check import read_model_card
    from unetkit.runs.folder import read_metrics_csv

    metrics = read_model_card(FIXTURE)["metrics"]
    assert metrics["mDice_point"] == pytest.approx(0.7830559707572363)
    assert metrics["mIoU_point"] == pytest.approx(0.7391115983729802)
    assert "mDice" not in metrics and "mIoU" not in metrics  # never the literature's by mistake
    rows = read_metrics_csv(FIXTURE / "metrics.csv")
    assert "val_mDice_point" in rows[0] and "val_mDice" not in rows[0]


def test_a_new_mapping_keeps_its_bare_mdice_as_the_literatures():
    from unetkit.core.metric_names import point_keys

    new = {"mDice": 0.8, "mDice_point": 0.7, "mIoU_point": 0.6}
    assert point_keys(new) == new
    assert point_keys({"mDice": 0.7, "per_class": {"a": {"mDice": 0.5}}}) == {
        "mDice_point": 0.7, "per_class": {"a": {"mDice_point": 0.5}}}


def test_the_old_monitor_names_are_migrated_with_a_note(capsys):
    from unetkit import config

    cfg = config.load("demo", overrides=["train.monitor=mIoU"])
    assert cfg.train.monitor == "mIoU_point"
    assert "mIoU is now called mIoU_point" in capsys.readouterr().err
    assert config.from_dict({"train": {"monitor": "mDice"}}).train.monitor == "mDice_point"


def test_the_hub_card_and_the_page_name_the_point_scores():
    from unetkit.deploy.export import model_card_markdown
    from unetkit.runs.check import read_model_card

    card = model_card_markdown(read_model_card(FIXTURE))
    assert "| mDice_point | 0.7831 |" in card
    assert "| mDice |" not in card and "| mIoU |" not in card


def test_evaluate_json_top_level_mdice_is_the_literatures(synthetic_data, tmp_path):
    """A binary model: mDice / mIoU at the top level equal field's (256 thresholds), the point
    scores are named apart. On a folder that is not the run's training data (the fixture
    trained elsewhere) every image is scored and the first line says so."""
    out = tmp_path / "scores.json"
    proc = run_cli("evaluate", str(FIXTURE), "--data", str(synthetic_data), "--json", str(out),
                   "--quiet")
    scores = json.loads(out.read_text())
    assert scores["mDice"] == scores["field"]["mDice"] and scores["mIoU"] == scores["field"]["mIoU"]
    assert scores["mDice"] != scores["mDice_point"]
    assert (scores["split"], scores["images_scored"], scores["images_total"]) == ("all", 48, 48)
    first = proc.stdout.splitlines()[0]
    assert "'all'" in first and "48 of 48 images" in first, proc.stdout
    assert "mDice@point" in proc.stdout and " mDice " not in proc.stdout.split("\n")[1]


def test_evaluate_on_the_runs_own_data_scores_its_held_out_split(synthetic_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    card = json.loads((run / "config.json").read_text())
    card["config"]["data"]["root"] = str(synthetic_data)  # as if trained on this folder
    (run / "config.json").write_text(json.dumps(card))
    out = tmp_path / "scores.json"
    proc = run_cli("evaluate", str(run), "--data", str(synthetic_data), "--json", str(out),
                   "--quiet")
    scores = json.loads(out.read_text())
    assert scores["split"] == "val" and scores["images_total"] == 48
    assert 0 < scores["images_scored"] < 48
    assert f"{scores['images_scored']} of 48 images" in proc.stdout.splitlines()[0]
