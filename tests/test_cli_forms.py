"""One form for each option across the verbs: --data DIR[:SPLIT] / --split, --negatives with
several folders, --device, check-data DIR or --data DIR; errors show the verb's own usage."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from run_fixtures import make_run
from unetkit.cli.curation import audit_splits
from unetkit.cli.main import build_parser, parse

TINY = ["model.base_channels=8", "model.depth=3", "data.image_size=[64, 64]"]
MODEL_VERBS = ("train", "evaluate", "calibrate", "report", "predict", "submit", "audit", "serve",
               "demo")


def test_data_split_in_either_form(tmp_path):
    data = str(tmp_path)
    for verb, extra in (("evaluate", []), ("calibrate", ["--max-false-alarm", "0.1"]),
                        ("export", ["--format", "int8", "--out", "m.onnx"])):
        a = parse([verb, "run", "--data", f"{data}:test", *extra])
        b = parse([verb, "run", "--data", data, "--split", "test", *extra])
        assert (a.data, a.split) == (b.data, b.split) == (data, "test")
        # evaluate without a split: val on the run's own data, all elsewhere (decided by
        # evaluate, which knows the run's data folder)
        assert parse([verb, "run", "--data", data, *extra]).split == (
            None if verb == "evaluate" else "val")
    r = parse(["report", "run", "--data", data, "--data", f"{data}:train", "--split", "val",
               "--out", "o"])
    assert r.data == [(data, "val"), (data, "train")]  # --split: the sets without their own
    assert parse(["report", "run", "--data", data, "--out", "o"]).data == [(data, "all")]


def test_negatives_take_several_folders_everywhere():
    for verb, extra in (("evaluate", ["--data", "d"]),
                        ("calibrate", ["--max-false-alarm", "0.1"]),
                        ("report", ["--out", "o"])):
        args = parse([verb, "run", *extra, "--negatives", "a", "b", "--negatives", "c"])
        assert args.negatives == ["a", "b", "c"], verb


def test_check_data_folder_positional_or_option(tmp_path):
    assert parse(["check-data", str(tmp_path)]).dir == str(tmp_path)
    assert parse(["check-data", "--data", str(tmp_path)]).dir == str(tmp_path)
    proc = run_cli("check-data", check=False)
    assert proc.returncode == 2 and "usage: unetkit check-data" in proc.stderr


def test_device_on_every_verb_that_runs_a_model():
    verbs = build_parser().verbs
    for name in MODEL_VERBS:
        options = {o for a in verbs[name]._actions for o in a.option_strings}
        assert "--device" in options, name


def test_the_offered_choices_are_the_implemented_ones():
    from unetkit.core import choices
    from unetkit.deploy import export, submit
    from unetkit.inference import predictor

    assert set(submit.FORMATS) == set(choices.SUBMISSION_FORMATS)
    assert export.FORMATS == choices.EXPORT_FORMATS
    assert predictor.BACKENDS == choices.BACKENDS == ("torch", *predictor.ONNX_FILES)


def test_every_positional_has_help():
    for name, p in build_parser().verbs.items():
        for action in p._actions:
            if not action.option_strings:
                assert action.help, f"unetkit {name}: positional {action.dest} has no help"


@pytest.mark.parametrize("args", [["evaluate", "run", "--data", "d", "--bogus"],
                                  ["check-data", "d", "--nope", "1"]])
def test_unknown_argument_shows_the_verbs_usage(args):
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"usage: unetkit {args[0]} ")
    assert f"unetkit {args[0]}: error: unrecognized arguments:" in proc.stderr


def test_one_data_with_two_splits_is_a_usage_error(tmp_path):
    proc = run_cli("evaluate", "run", "--data", f"{tmp_path}:val", "--split", "test",
                   check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: unetkit evaluate ")
    assert "name two splits" in proc.stderr


def test_audit_split_name_file_or_name_file(tmp_path):
    (tmp_path / "test.txt").write_text("a\n")
    splits = audit_splits(["val", str(tmp_path / "test.txt"), f"held={tmp_path / 'test.txt'}"],
                          tmp_path)
    assert splits == {"val": None, "test": tmp_path / "test.txt",
                      "held": tmp_path / "test.txt"}


def test_evaluate_and_report_run_with_either_form(tmp_path, synthetic_data):
    run = make_run(tmp_path / "run", TINY + [f"data.root={synthetic_data}"])
    scores = []
    for i, form in enumerate(([f"{synthetic_data}:val"], [str(synthetic_data), "--split", "val"])):
        run_cli("evaluate", str(run), "--data", *form, "--device", "cpu", "--quiet",
                "--json", str(tmp_path / f"{i}.json"))
        scores.append(json.loads((tmp_path / f"{i}.json").read_text()))
    assert scores[0]["images"] == scores[1]["images"] > 0
    assert scores[0]["mDice"] == scores[1]["mDice"]
    run_cli("report", str(run), "--data", str(synthetic_data), "--split", "val", "--device",
            "cpu", "--quiet", "--out", str(tmp_path / "rep"))
    rows = (tmp_path / "rep" / "per_image.csv").read_text().splitlines()
    assert len(rows) - 1 == scores[0]["images"]  # the val split, not all 48 images
