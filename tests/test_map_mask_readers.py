"""One mask reader (unetkit.io.images.MaskDecoder, as check-data) and one map reader
(unetkit.io.maps) for `score` and `audit`; one range rule for every --threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from unetkit.evaluation.score import ScoreError, mask_decoder, score_folders


def _pairs(tmp_path, count=3):
    maps, masks = tmp_path / "maps", tmp_path / "masks"
    maps.mkdir(), masks.mkdir()
    truths = []
    for i in range(count):
        gt = np.zeros((40, 50), bool)
        gt[8 + i:30, 10:35 + i] = True
        Image.fromarray(gt.astype(np.uint8) * 255).save(maps / f"{i}.png")  # perfect maps
        truths.append(gt)
    return maps, masks, truths


def _save_masks(masks, truths, convert):
    for i, gt in enumerate(truths):
        convert(gt).save(masks / f"{i}.png")


def _plain(maps, masks, truths):
    """The scores with the masks as 8-bit 0/255 PNGs, what every decodable form must give."""
    _save_masks(masks, truths, lambda gt: Image.fromarray(gt.astype(np.uint8) * 255))
    return score_folders(maps, masks, progress=False, workers=1)["metrics"]


def test_a_red_mask_is_refused_with_the_option_and_read_as_declared(tmp_path):
    maps, masks, truths = _pairs(tmp_path)
    plain = _plain(maps, masks, truths)

    def red(gt):
        rgb = np.zeros((*gt.shape, 3), np.uint8)
        rgb[gt] = (255, 0, 0)
        return Image.fromarray(rgb)
    _save_masks(masks, truths, red)
    with pytest.raises(ScoreError, match=r"0\.png: a colour mask.*--mask-encoding=color"):
        score_folders(maps, masks, progress=False, workers=1)
    declared = mask_decoder("color", colors=[[0, 0, 0], [255, 0, 0]])
    result = score_folders(maps, masks, progress=False, workers=1, decoder=declared)
    assert result["metrics"] == plain


def test_16_bit_masks_decode_as_declared_and_0_1_ones_are_refused(tmp_path):
    maps, masks, truths = _pairs(tmp_path)
    plain = _plain(maps, masks, truths)
    _save_masks(masks, truths, lambda gt: Image.fromarray(gt.astype(np.uint16) * 255))
    assert score_folders(maps, masks, progress=False)["metrics"] == plain
    _save_masks(masks, truths, lambda gt: Image.fromarray(gt.astype(np.uint16)))
    with pytest.raises(ScoreError, match="0/1 index mask.*--mask-encoding=index"):
        score_folders(maps, masks, progress=False)
    index = mask_decoder("index")
    assert score_folders(maps, masks, progress=False, decoder=index)["metrics"] == plain


def test_empty_truth_is_counted_in_the_table_and_an_all_empty_set_refused(tmp_path):
    maps, masks, truths = _pairs(tmp_path)
    _save_masks(masks, truths, lambda gt: Image.fromarray(gt.astype(np.uint8) * 255))
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(masks / "0.png")
    proc = run_cli("score", str(maps), "--masks", str(masks), "--quiet")
    header, _, row = proc.stdout.splitlines()[:3]
    assert header.rstrip(" |").endswith("empty truth") and row.rstrip(" |").endswith("| 3 | 1")
    assert "1 of 3 masks are empty" in proc.stdout
    for i in range(3):
        Image.fromarray(np.zeros((40, 50), np.uint8)).save(masks / f"{i}.png")
    proc = run_cli("score", str(maps), "--masks", str(masks), "--quiet", check=False)
    assert proc.returncode == 2 and "every one of the 3 masks" in proc.stderr


def test_the_same_folder_as_maps_and_masks_is_refused(tmp_path):
    maps, _, _ = _pairs(tmp_path)
    proc = run_cli("score", str(maps), "--masks", str(maps), "--quiet", check=False)
    assert proc.returncode == 2 and "both the maps and the masks" in proc.stderr


def _audit_set(tmp_path):
    from unetkit.data.synthetic import write_dataset

    data = write_dataset(tmp_path / "data", count=4, size=48)
    maps = tmp_path / "maps"
    maps.mkdir()
    probs = {}
    for mask in sorted((data / "masks").glob("*.png")):
        fg = (np.asarray(Image.open(mask)) > 127).astype(np.float64)
        fg[:, :8] = 0.7  # a band of false positives, so that the audit has a doubt to rank
        probs[mask.stem] = fg
    return data, maps, probs


def _audit_rows(data, maps, out, *extra):
    run_cli("audit", str(data), str(maps), "--out", str(out), "--quiet", *extra)
    return sorted((out / "audit.csv").read_text().splitlines()[1:])


@pytest.mark.parametrize("form", ["16-bit", "red channel"])
def test_audit_reads_maps_as_score_does(tmp_path, form):
    """16-bit maps are scaled by their bit depth (not clipped at 255), a probability held in
    one colour channel is read from it (not by luminance): the audit equals the 8-bit one."""
    data, maps, probs = _audit_set(tmp_path)
    for stem, p in probs.items():
        Image.fromarray(np.round(p * 255).astype(np.uint8)).save(maps / f"{stem}_prob.png")
    plain = _audit_rows(data, maps, tmp_path / "plain")
    for stem, p in probs.items():
        grey = np.round(p * 255).astype(np.uint8)
        if form == "16-bit":
            img = Image.fromarray(grey.astype(np.uint16) * 257)
        else:
            rgb = np.zeros((*grey.shape, 3), np.uint8)
            rgb[..., 0] = grey
            img = Image.fromarray(rgb)
        img.save(maps / f"{stem}_prob.png")
    assert _audit_rows(data, maps, tmp_path / "other") == plain


def test_a_npy_map_of_another_class_count_is_refused(tmp_path):
    data, maps, probs = _audit_set(tmp_path)
    for stem, p in probs.items():
        np.save(maps / f"{stem}.npy", np.stack([1 - p, p / 2, p / 2]).astype(np.float32))
    proc = run_cli("audit", str(data), str(maps), "--out", str(tmp_path / "out"), "--quiet",
                   check=False)
    assert proc.returncode == 2 and "3 class planes, but the model has 2 classes" in proc.stderr


@pytest.mark.parametrize("value", ["7", "nan", "-0.1"])
def test_one_range_rule_for_every_threshold(tmp_path, synthetic_data, value):
    from contracts import FIXTURE_RUN

    data, maps, _ = _audit_set(tmp_path)
    image = next((synthetic_data / "images").iterdir())
    for argv in (["audit", str(data), str(maps), "--out", str(tmp_path / "a")],
                 ["evaluate", str(FIXTURE_RUN), "--data", str(synthetic_data)],
                 ["report", str(FIXTURE_RUN), "--data", str(synthetic_data), "--out",
                  str(tmp_path / "r")],
                 ["predict", str(FIXTURE_RUN), str(image), "--out", str(tmp_path / "p")]):
        proc = run_cli(*argv, "--threshold", value, "--quiet", check=False)
        assert proc.returncode == 2, (argv[0], proc.stdout)
        assert len(proc.stderr.strip().splitlines()) == 1 and "--threshold" in proc.stderr, \
            (argv[0], proc.stderr)
    assert not (tmp_path / "a").exists() and not (tmp_path / "r").exists()


def test_evaluate_report_and_score_agree_on_every_shared_number(synthetic_data, tmp_path):
    """The same images and model: evaluate's JSON, report's scores.json and papers' table, and
    score on the maps `predict --probs` writes give the same numbers."""
    from contracts import FIXTURE_RUN

    run_cli("evaluate", str(FIXTURE_RUN), "--data", str(synthetic_data), "--json",
            str(tmp_path / "e.json"), "--quiet")
    ours = json.loads((tmp_path / "e.json").read_text())
    run_cli("report", str(FIXTURE_RUN), "--data", str(synthetic_data), "--out",
            str(tmp_path / "rep"), "--quiet")
    reported = json.loads((tmp_path / "rep" / "scores.json").read_text())[synthetic_data.name]
    run_cli("predict", str(FIXTURE_RUN), str(synthetic_data / "images"), "--out",
            str(tmp_path / "pred"), "--probs", "--quiet")
    # predict's folder as it is: score takes its STEM_prob.png maps, skips its summaries
    proc = run_cli("score", str(tmp_path / "pred"), "--masks", str(synthetic_data / "masks"),
                   "--json", str(tmp_path / "s.json"), "--quiet")
    assert proc.stdout.startswith("scored the probability maps STEM_prob.png")
    scored = json.loads((tmp_path / "s.json").read_text())
    assert scored["suffix"] == "_prob"
    assert ours == reported  # every number, the split and the counts included
    assert ours["images_scored"] == ours["field"]["images"] == scored["images"] == 48
    assert ours["mDice"] == ours["field"]["mDice"]
    for key, value in scored["metrics"].items():
        assert ours["field"][key] == pytest.approx(value, abs=1e-3), key
    table = (tmp_path / "rep" / "papers_table.md").read_text()
    assert f"| {ours['mDice']:.3f} | {ours['mIoU']:.3f} | {ours['field']['wFm']:.3f} |" in table


def test_score_reads_a_predict_folder_without_maps_as_its_masks(synthetic_data, tmp_path):
    """predict without --probs: its 0/255 masks are the maps (its summaries are skipped); a
    --suffix given is taken as it is."""
    from contracts import FIXTURE_RUN

    run_cli("predict", str(FIXTURE_RUN), str(synthetic_data / "images"), "--out",
            str(tmp_path / "pred"), "--quiet")
    proc = run_cli("score", str(tmp_path / "pred"), "--masks", str(synthetic_data / "masks"),
                   "--json", str(tmp_path / "s.json"), "--quiet")
    scored = json.loads((tmp_path / "s.json").read_text())
    assert "probability maps" not in proc.stdout
    assert scored["suffix"] == "" and scored["images"] == 48
    assert {row["map"] for row in scored["per_image"]} == {
        p.name for p in (tmp_path / "pred").glob("*.png")}
    proc = run_cli("score", str(tmp_path / "pred"), "--masks", str(synthetic_data / "masks"),
                   "--suffix", "_prob", "--quiet", check=False)
    assert proc.returncode == 2 and "48 mask(s) in" in proc.stderr
    assert "without a map" in proc.stderr
