"""The field's metrics (unetkit.evaluation) against PySODMetrics, the reference implementation
of PraNet's MATLAB evaluation, per image and averaged; and `score_folders` / `unetkit score`."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import real_data, run_cli
from unetkit.cli import score as cli_score
from unetkit.core.files import OutputError
from unetkit.evaluation.field_metrics import FieldMetrics, image_scores, resize_map, to_uint8_map
from unetkit.evaluation.score import ScoreError, score_folders

sod = pytest.importorskip("py_sod_metrics", reason="pysodmetrics (the `test` extra) is the "
                          "reference these tests compare with")
TOL = 1e-3
# The weighted F-measure uses the reference's own distance transform (scipy's), so only the
# weights of pixels beyond FAR (within 2^-20 of theirs) and summation order remain.
WFM_TOL = 1e-7
KEYS = ("mDice", "mIoU", "maxDice", "wFm", "Sm", "meanEm", "maxEm", "adpEm", "MAE")


class Reference:
    """PySODMetrics' evaluators, fed the same uint8 maps and 0/255 masks."""

    def __init__(self):
        self.fm = sod.FmeasureV2({"dice": sod.DICEHandler(True, False),
                                  "iou": sod.IOUHandler(True, False)})
        self.sm, self.em = sod.Smeasure(), sod.Emeasure()
        self.wfm, self.mae = sod.WeightedFmeasure(), sod.MAE()

    def step(self, pred: np.ndarray, gt: np.ndarray) -> dict:
        mask = gt.astype(np.uint8) * 255
        for metric in (self.fm, self.sm, self.em, self.wfm, self.mae):
            metric.step(pred, mask)
        dice = self.fm._metric_handlers["dice"].dynamic_results[-1]
        iou = self.fm._metric_handlers["iou"].dynamic_results[-1]
        em = self.em.changeable_ems[-1]
        return {"mDice": dice.mean(), "mIoU": iou.mean(), "maxDice": dice.max(),
                "wFm": self.wfm.weighted_fms[-1], "Sm": self.sm.sms[-1], "meanEm": em.mean(),
                "maxEm": em.max(), "adpEm": self.em.adaptive_ems[-1], "MAE": self.mae.maes[-1]}

    def results(self) -> dict:
        fm = self.fm.get_results()
        em = self.em.get_results()["em"]
        return {"mDice": fm["dice"]["dynamic"].mean(), "mIoU": fm["iou"]["dynamic"].mean(),
                "maxDice": fm["dice"]["dynamic"].max(), "wFm": self.wfm.get_results()["wfm"],
                "Sm": self.sm.get_results()["sm"], "meanEm": em["curve"].mean(),
                "maxEm": em["curve"].max(), "adpEm": em["adp"],
                "MAE": self.mae.get_results()["mae"]}


def assert_close(ours: dict, ref: dict, what: str) -> None:
    bad = {k: (ours[k], float(ref[k])) for k in KEYS
           if not abs(ours[k] - ref[k]) <= (WFM_TOL if k == "wFm" else TOL)}
    assert not bad, f"{what}: (unetkit, pysodmetrics) differ by more than {TOL} ({WFM_TOL} for "\
                    f"wFm): {bad}"


def fake_prediction(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A smooth, shifted, noisy uint8 map made from a truth mask: it stands in for a trained
    model's prediction (soft edges, misses, false alarms), with a fixed seed."""
    h, w = gt.shape
    dy, dx = rng.integers(-h // 20, h // 20 + 1), rng.integers(-w // 20, w // 20 + 1)
    grey = Image.fromarray(np.roll(gt, (dy, dx), (0, 1)).astype(np.uint8) * 255)
    soft = np.asarray(grey.filter(ImageFilter.GaussianBlur(rng.uniform(2, 12))), np.float64)
    blob = np.zeros((h, w))
    y, x = rng.integers(0, h), rng.integers(0, w)
    blob[max(y - 20, 0):y + 20, max(x - 30, 0):x + 30] = rng.uniform(60, 200)  # a false alarm
    noisy = soft * rng.uniform(0.6, 1.0) + blob + rng.normal(0, 12, (h, w))
    return noisy.clip(0, 255).round().astype(np.uint8)


def compare(pairs, what: str) -> None:
    ours, ref = FieldMetrics(), Reference()
    for name, pred, gt in pairs:
        assert_close(ours.add(pred, gt), ref.step(pred, gt), f"{what} {name}")
    assert_close(ours.results(), ref.results(), f"{what} averaged")


def real_pairs(name: str, masks: list, count: int = 20):
    rng = np.random.default_rng(20200520)
    for path in masks[:count]:
        gt = np.asarray(Image.open(path).convert("L")) > 128
        yield path.stem, fake_prediction(gt, rng), gt


def test_kvasir_pranet_test_maps_agree_with_pysodmetrics():
    root = real_data("kvasir-seg")
    stems = (root / "splits" / "pranet-test.txt").read_text().split()
    masks = [root / "masks" / f"{stem}.jpg" for stem in stems]
    compare(real_pairs("kvasir", masks), "Kvasir-SEG")


def test_cvc_colondb_maps_agree_with_pysodmetrics():
    root = real_data("cvc-colondb")
    masks = sorted((root / "masks").glob("*.png"), key=lambda p: int(p.stem))[::19]
    compare(real_pairs("cvc", masks), "CVC-ColonDB")


def test_cvc_colondb_tiff_masks_score_like_their_png_copies(tmp_path):
    root = real_data("cvc-colondb")
    tiffs = sorted((root / "tiff-originals" / "masks").glob("*.tiff"))
    if not tiffs:
        pytest.skip(f"no TIFF masks in {root / 'tiff-originals' / 'masks'}")
    maps = tmp_path / "maps"
    maps.mkdir()
    ref = Reference()
    for stem, pred, gt in real_pairs("cvc", [root / "masks" / f"{p.stem}.png" for p in tiffs]):
        Image.fromarray(pred).save(maps / f"{stem}.png")
        ref.step(pred, gt)
    result = score_folders(maps, tiffs[0].parent, progress=False)
    assert result["images"] == len(tiffs)
    assert_close(result["metrics"], ref.results(), "CVC-ColonDB TIFF masks")


def edge_cases():
    rng = np.random.default_rng(7)
    h, w = 48, 64
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
                        .filter(ImageFilter.GaussianBlur(3)))
    polyp = np.zeros((h, w), bool)
    polyp[12:30, 20:44] = True
    dot = np.zeros((h, w), bool)
    dot[20, 30] = True
    empty = np.zeros((h, w), bool)
    binary = np.roll(polyp, (3, -4), (0, 1)).astype(np.uint8) * 255
    return [("empty truth", smooth, empty), ("empty truth, empty map", np.zeros((h, w), np.uint8),
             empty), ("empty prediction", np.zeros((h, w), np.uint8), polyp),
            ("constant map", np.full((h, w), 128, np.uint8), polyp),
            ("constant map, empty truth", np.full((h, w), 77, np.uint8), empty),
            ("one-pixel polyp", smooth, dot), ("one-pixel map", dot.astype(np.uint8) * 255, dot),
            ("binary map", binary, polyp), ("perfect binary map", polyp.astype(np.uint8) * 255,
                                            polyp),
            ("full truth", smooth, np.ones((h, w), bool)), ("smooth map", smooth, polyp)]


@pytest.mark.parametrize("name, pred, gt", edge_cases(), ids=[c[0] for c in edge_cases()])
def test_edge_cases_agree_with_pysodmetrics(name, pred, gt):
    compare([(name, pred, gt)], name)


def test_edge_cases_averaged_together():
    compare(edge_cases(), "edge cases")


def test_map_of_another_size_is_resized_and_counted():
    rng = np.random.default_rng(3)
    gt = np.zeros((90, 120), bool)
    gt[30:60, 40:90] = True
    small = fake_prediction(gt, rng)[::2, ::2]  # a map written at half size
    ours, ref = FieldMetrics(), Reference()
    scores = ours.add(small, gt)
    assert scores["resized"] and ours.results()["resized"] == 1
    assert_close(scores, ref.step(resize_map(small, gt.shape), gt), "resized map")


def test_resize_is_torchs_bilinear():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    for shape, size in (((30, 40), (61, 83)), ((100, 90), (37, 45))):
        grey = rng.integers(0, 256, shape, dtype=np.uint8)
        ref = torch.nn.functional.interpolate(torch.from_numpy(grey / 255)[None, None], size=size,
                                              mode="bilinear", align_corners=False)[0, 0]
        ref = ref.clamp(0, 1).numpy()
        diff = resize_map(grey, size).astype(int) - to_uint8_map(ref)
        halves = np.abs(ref * 255 % 1 - 0.5) < 1e-9  # x.5: float noise may round either way
        assert np.abs(diff).max() <= 1 and not diff[~halves].any()


def test_float_probabilities_become_the_fields_uint8_map():
    rng = np.random.default_rng(4)
    prob = rng.random((40, 50))
    gt = prob > 0.7
    assert np.array_equal(to_uint8_map(prob), np.floor(prob * 255 + 0.5).astype(np.uint8))
    a, b = FieldMetrics().add(prob, gt), FieldMetrics().add(to_uint8_map(prob), gt)
    assert a == b
    sixteen = (prob * 65535).round().astype(np.uint16)
    assert np.abs(to_uint8_map(sixteen).astype(int) - to_uint8_map(prob)).max() <= 1
    with pytest.raises(ValueError, match="probabilities"):
        to_uint8_map(prob * 2)


def test_a_0_1_label_mask_is_refused_not_read_as_empty(tmp_path):
    labels = np.zeros((20, 20), np.uint8)
    labels[5:9, 5:9] = 1
    with pytest.raises(ValueError, match="0/1"):
        FieldMetrics().add(labels * 200, labels)
    assert FieldMetrics().add(labels * 200, labels.astype(bool))["mDice"] > 0.9
    maps, masks = tmp_path / "maps", tmp_path / "masks"
    maps.mkdir(), masks.mkdir()
    Image.fromarray(labels * 200).save(maps / "a.png")
    Image.fromarray(labels).save(masks / "a.png")
    with pytest.raises(ScoreError, match=r"a\.png.*0/1"):
        score_folders(maps, masks, progress=False)


def test_polyp_on_the_last_row_is_finite_where_the_reference_gives_nan():
    # The S-measure's centroid on the last row leaves two quadrants without pixels: the
    # reference averages an empty array (NaN); unetkit counts them 0 (their weight is 0).
    gt = np.zeros((32, 32), bool)
    gt[31, 10:14] = True
    pred = (gt * 200).astype(np.uint8)
    scores, _ = image_scores(pred, gt)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        ref = Reference().step(pred, gt)
    assert np.isnan(ref["Sm"]) and 0 <= scores["Sm"] <= 1
    assert_close(scores, dict(ref, Sm=scores["Sm"]), "last-row polyp")


# score_folders and the `unetkit score` verb -----------------------------------------------


def write_set(tmp_path, count=4, sixteen=False, tiff_masks=False):
    rng = np.random.default_rng(11)
    maps, masks = tmp_path / "maps", tmp_path / "masks"
    maps.mkdir(), masks.mkdir()
    pairs = []
    for i in range(count):
        gt = np.zeros((60, 80), bool)
        gt[10 + i:40, 20:50 + i] = True
        pred = fake_prediction(gt, rng)
        if sixteen:
            Image.fromarray(pred.astype(np.uint16) * 257).save(maps / f"{i}.png")
        else:
            Image.fromarray(pred).save(maps / f"{i}.png")
        if tiff_masks:
            import tifffile
            tifffile.imwrite(masks / f"{i}.tif", gt.astype(np.uint8) * 255)
        else:
            Image.fromarray(gt.astype(np.uint8) * 255).save(masks / f"{i}.jpg", quality=90)
        pairs.append((str(i), pred, gt))
    return maps, masks, pairs


@pytest.mark.parametrize("sixteen, tiff_masks", [(False, False), (True, True)])
def test_score_folders_agrees_with_pysodmetrics(tmp_path, sixteen, tiff_masks):
    maps, masks, pairs = write_set(tmp_path, sixteen=sixteen, tiff_masks=tiff_masks)
    result = score_folders(maps, masks, out=tmp_path / "out", progress=False)
    ref = Reference()
    for stem, pred, _ in pairs:  # the JPEG masks' noise is what the reference binarises too
        truth = np.asarray(Image.open(next(masks.glob(stem + ".*"))).convert("L")) > 128
        ref.step(pred, truth)
    assert_close(result["metrics"], ref.results(), "score_folders")
    assert result["images"] == 4 and result["resized"] == 0
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.splitlines()[0].split("|")[2:9] == [
        " mDice ", " mIoU ", " wFβ ", " Sα ", " mean Eφ ", " max Eφ ", " MAE "]
    rows = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("stem,map,mask,resized,mDice")
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["images"] == 4


def test_worker_processes_give_the_same_result(tmp_path):
    maps, masks, _ = write_set(tmp_path, count=40)
    one = score_folders(maps, masks, progress=False, workers=1)
    two = score_folders(maps, masks, progress=False, workers=2)
    assert one == two and one["images"] == 40


def test_suffix_scores_the_probability_maps_predict_writes(tmp_path):
    maps, masks, _ = write_set(tmp_path)
    plain = score_folders(maps, masks, progress=False)
    for path in sorted(maps.iterdir()):  # predict's layout: NAME.png mask, NAME_prob.png map
        path.rename(maps / f"{path.stem}_prob.png")
        Image.new("L", (80, 60)).save(path)
    (maps / "summary.json").write_text("{}")
    result = score_folders(maps, masks, progress=False, suffix="_prob")
    assert result["metrics"] == plain["metrics"] and result["per_image"][0]["map"] == "0_prob.png"


def test_unpaired_files_give_one_error_listing_them(tmp_path):
    maps, masks, _ = write_set(tmp_path)
    (masks / "0.jpg").unlink()
    Image.new("L", (8, 8)).save(masks / "extra.png")
    with pytest.raises(ScoreError) as info:
        score_folders(maps, masks, progress=False)
    message = str(info.value)
    assert "0.png" in message and "extra.png" in message and "existing" in message


def test_existing_only_scores_the_pairs_and_names_the_rest(tmp_path, capsys):
    maps, masks, _ = write_set(tmp_path)
    (maps / "3.png").unlink()
    result = score_folders(maps, masks, pairs="existing", progress=False)
    assert result["images"] == 3 and result["masks_without_map"] == ["3.jpg"]
    parser = argparse.ArgumentParser()
    cli_score.add_arguments(parser)
    args = parser.parse_args([str(maps), "--masks", str(masks), "--existing-only",
                              "--json", str(tmp_path / "r.json")])
    assert cli_score.run(args) == 0
    out = capsys.readouterr().out
    assert "| mDice |" in out and "3.jpg" in out
    assert json.loads((tmp_path / "r.json").read_text())["images"] == 3
    assert cli_score.run(parser.parse_args([str(maps), "--masks", str(masks)])) == 2
    assert "--existing-only" in capsys.readouterr().err


def test_files_that_are_not_images_are_named(tmp_path):
    maps, masks, _ = write_set(tmp_path)
    (maps / "notes.txt").write_text("not a map")
    with pytest.raises(ScoreError, match="notes.txt"):
        score_folders(maps, masks, progress=False)
    (maps / "notes.txt").unlink()
    (maps / "2.png").write_bytes(b"broken")
    with pytest.raises(ScoreError, match="2.png"):
        score_folders(maps, masks, progress=False)


def test_nothing_is_written_over_an_input(tmp_path):
    maps, masks, _ = write_set(tmp_path)
    before = {p: p.read_bytes() for p in (*maps.iterdir(), *masks.iterdir())}
    for out in (maps, masks):
        with pytest.raises(OutputError, match="inside the input folder"):  # the one guard
            score_folders(maps, masks, out=out, progress=False)
    score_folders(maps, masks, out=tmp_path / "out", progress=False)
    with pytest.raises(ScoreError, match="does not write over"):
        score_folders(maps, masks, out=tmp_path / "out", progress=False)
    assert {p: p.read_bytes() for p in (*maps.iterdir(), *masks.iterdir())} == before


def test_evaluate_gives_the_same_columns_as_score_on_the_maps_predict_writes(synthetic_data,
                                                                              tmp_path):
    """For unetkit's own models: `evaluate`'s field columns equal `score` on the probability
    maps `predict --probs` writes (a trained fixture model, 48 synthetic images)."""
    from pathlib import Path

    from unetkit.evaluation.evaluate import evaluate
    from unetkit.inference.predict import predict_files

    run = Path(__file__).parent / "fixtures" / "run-0.1.0"
    ours = evaluate(run, synthetic_data, "all", progress=False)["field"]
    predict_files(run, [str(synthetic_data / "images")], tmp_path / "pred", probs=True,
                  progress=False, log=lambda *a: None)
    theirs = score_folders(tmp_path / "pred", synthetic_data / "masks", suffix="_prob",
                           progress=False, workers=1)
    assert ours["images"] == theirs["images"] == 48
    assert 0.3 < ours["mDice"] < 1  # a model that learnt something: the columns mean it
    for key in KEYS:
        assert ours[key] == pytest.approx(theirs["metrics"][key], abs=TOL), key


def test_report_prints_the_papers_table_with_published_rows_marked(synthetic_data, tmp_path):
    """One row per model, a block of columns per set, the unseen mean; published rows carry
    '*' and their source, are never given values the papers did not print, and stand only
    beside the protocol's test images: a folder merely named like the benchmark gets a line
    saying why they are absent."""
    import shutil
    from pathlib import Path

    from unetkit.data.synthetic import write_dataset
    from unetkit.evaluation.evaluate import evaluate
    from unetkit.evaluation.paper_table import PUBLISHED, protocol_stems, published_key
    from unetkit.evaluation.report import write_report

    fixture = Path(__file__).parent / "fixtures" / "run-0.1.0"
    run = tmp_path / "ours"
    shutil.copytree(fixture, run)
    named = tmp_path / "named" / "kvasir-seg"  # named as the data set, 48 other images
    shutil.copytree(synthetic_data, named)
    out = write_report(run, [str(named)], [], tmp_path / "rep0", progress=False, published=True)
    md = (out / "report.md").read_text()
    assert "PraNet *" not in md and "arXiv:2401.11734" not in md
    assert "kvasir-seg: no published rows: the 48 images scored are not PraNet's 100" in md

    kvasir = tmp_path / "kvasir-seg"  # the protocol's 100 test stems (synthetic pixels)
    write_dataset(kvasir, count=100, size=32)
    stems = sorted(protocol_stems("kvasir"))
    for folder, suffix in (("images", ".jpg"), ("masks", ".png")):
        for path, stem in zip(sorted((kvasir / folder).iterdir()), stems, strict=True):
            path.rename(kvasir / folder / f"{stem}{suffix}")
    out = write_report(run, [str(kvasir)], [], tmp_path / "rep", progress=False,
                       compare=[str(fixture)], published=True)
    md = (out / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    header, rows = table[0], {line.split(" | ")[0][2:]: line for line in table[1:]}
    assert "kvasir-seg mDice" in header and "unseen mean MAE" in header
    field = evaluate(run, kvasir, "all", progress=False)["field"]
    assert f"| {field['mDice']:.3f} | {field['mIoU']:.3f} | {field['wFm']:.3f} |" in rows["ours"]
    assert "run-0.1.0" in rows
    assert published_key("kvasir-seg") == "kvasir" and published_key("CVC-ColonDB") == "colondb"
    dice, iou = PUBLISHED["PraNet"]["kvasir"]
    assert rows["PraNet *"].startswith(f"| PraNet * | {dice:.3f} | {iou:.3f} | – |")
    assert "published figures, not measured here" in md and "arXiv:2401.11734" in md


def test_report_prints_the_papers_table_to_the_terminal(synthetic_data, tmp_path):
    from pathlib import Path

    fixture = Path(__file__).parent / "fixtures" / "run-0.1.0"
    proc = run_cli("report", str(fixture), "--data", str(synthetic_data), "--out",
                   str(tmp_path / "rep"), "--published", "--quiet")
    assert proc.stdout.startswith("| model | ")
    assert "Published rows not shown: no data set here is a benchmark" in proc.stdout


@pytest.mark.parametrize("name", ["kvasir-seg", "cvc-colondb"])
def test_a_trained_models_maps_on_real_images_agree_with_pysodmetrics(name):
    """The maps of a trained unetkit model (tests/fixtures/run-0.1.0, trained on synthetic
    polyps) on 10 real images of each set, made the field's 0-255 maps, then scored by both."""
    from pathlib import Path

    from unetkit.inference.detection import foreground
    from unetkit.inference.predictor import Predictor

    root = real_data(name)
    masks = sorted((root / "masks").iterdir())[::37][:10]
    images = {p.stem: p for p in (root / "images").iterdir()}
    predictor = Predictor.from_run(Path(__file__).parent / "fixtures" / "run-0.1.0", "cpu")
    pairs = []
    for mask in masks:
        probs = predictor.probabilities([predictor.read(images[mask.stem])])[0]
        pred = to_uint8_map(foreground(probs).clip(0, 1))
        pairs.append((mask.stem, pred, np.asarray(Image.open(mask).convert("L")) > 128))
    assert len({p.tobytes() for _, p, _ in pairs}) == len(pairs)  # real, differing maps
    compare(pairs, f"{name}, a trained model's maps")
