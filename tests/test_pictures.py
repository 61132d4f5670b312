"""Pictures a person reads: sample panels, image overlays (tint or outline), probability colour
maps, the report's page and curves.png, all drawn without pyplot's global state."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import REPO, process_env, run_cli
from run_fixtures import make_run
from unetkit.evaluation.report import panel_title
from unetkit.io.plots import TILE, _fit, _font, class_palette, curves_figure, overlay, panel

TINY = ["model.base_channels=8", "model.depth=3", "data.image_size=[64, 64]"]
PALETTE = class_palette(2)


def _disc(size=64, r=12):
    yy, xx = np.mgrid[:size, :size]
    return (((yy - size // 2) ** 2 + (xx - size // 2) ** 2) < r * r).astype(np.uint8)


def test_panel_tiles_are_large_and_titles_fit():
    image = np.full((64, 80, 3), 90, np.uint8)
    truth = np.pad(_disc(64), ((0, 0), (0, 16)))
    title = "a-very-long-frame-name-from-a-colonoscopy-video_000123.jpg: dice 0.12 " * 3
    out = panel(image, truth, truth, PALETTE, title)
    assert out.shape[0] >= TILE and out.shape[1] >= 3 * TILE * 80 // 64  # 3 tiles, aspect kept
    font = _font(14)
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    shown = _fit(draw, title, font, out.shape[1] - 6)
    assert draw.textlength(shown, font=font) <= out.shape[1] - 6 and "…" in shown
    big = panel(np.zeros((1000, 1000, 3), np.uint8), None, np.zeros((1000, 1000), np.uint8),
                PALETTE)
    assert big.shape[0] < 400  # large frames are shown small, at the same tile height


def test_outline_style_draws_outlines_not_a_tint():
    image = np.full((64, 64, 3), 100, np.uint8)
    labels = _disc()
    tint = overlay(image, labels, PALETTE)
    line = overlay(image, labels, PALETTE, style="outline")
    assert not np.array_equal(tint, line)
    assert (line[32, 32] == image[32, 32]).all()  # the inside is left as it is
    assert (line[32, 32 - 12] == PALETTE[1]).all() or (line[32, 32 - 11] == PALETTE[1]).all()
    assert ((line != image).any(2)).sum() < ((tint != image).any(2)).sum() / 2
    with pytest.raises(ValueError, match="outline or tint"):
        overlay(image, labels, PALETTE, style="dots")


def test_predict_overlay_style_and_probability_colours(tmp_path, synthetic_data):
    run = make_run(tmp_path / "run", TINY)
    image = sorted((synthetic_data / "images").iterdir())[0]
    run_cli("predict", str(run), str(image), "--out", str(tmp_path / "p"), "--probs",
            "--colormap", "viridis", "--quiet")
    prob = np.asarray(Image.open(tmp_path / "p" / f"{image.stem}_prob.png"))
    assert prob.ndim == 2  # the grey map `unetkit score` reads is unchanged
    color = np.asarray(Image.open(tmp_path / "p" / f"{image.stem}_prob_color.png"))
    assert color.shape == (*prob.shape, 3) and len(np.unique(color.reshape(-1, 3), axis=0)) > 2
    # A threshold at the median probability: about half the image is foreground.
    threshold = str(max(0.01, min(0.99, float(np.median(prob)) / 255)))
    outs = {}
    for style in ("tint", "outline"):
        run_cli("predict", str(run), str(image), "--out", str(tmp_path / style), "--overlay",
                "--style", style, "--threshold", threshold, "--quiet")
        outs[style] = (tmp_path / style / f"{image.stem}_overlay.png").read_bytes()
    assert outs["tint"] != outs["outline"]
    default = tmp_path / "default"
    run_cli("predict", str(run), str(image), "--out", str(default), "--overlay", "--threshold",
            threshold, "--quiet")
    assert (default / f"{image.stem}_overlay.png").read_bytes() == outs["tint"]
    for extra, message in ((["--probs", "--colormap", "nope"], "unknown colour map 'nope'"),
                           (["--colormap", "viridis"], "add --probs")):
        proc = run_cli("predict", str(run), str(image), "--out", str(tmp_path / "x"), *extra,
                       check=False)
        assert proc.returncode == 2 and message in proc.stderr
        assert not (tmp_path / "x").exists()


def test_report_page_reads_well(tmp_path, synthetic_data):
    run = make_run(tmp_path / "run", TINY)
    negatives = tmp_path / "polyp-free"
    negatives.mkdir()
    for path in sorted((synthetic_data / "images").iterdir())[:3]:
        shutil.copy(path, negatives / path.name)
    run_cli("report", str(run), "--data", f"{synthetic_data}:val", "--negatives",
            str(negatives), "--threshold", "0.01", "--out", str(tmp_path / "rep"), "--quiet",
            "--published")
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "`" not in page  # no Markdown code marks on the page, the title included
    assert '<div class="table"><table>' in page and "overflow-x:auto" in page
    assert "td{white-space:nowrap}" in page  # a number never breaks over two lines
    assert "\\*" not in page  # Markdown's escape is not shown
    # published rows stand only beside a benchmark's test set: here a line says why not
    assert "Published rows not shown" in page
    worst = sorted((tmp_path / "rep" / "worst" / "polyp-free").glob("*.png"))
    assert worst  # every frame flagged at threshold 0.01: the negatives have worst cases
    assert Image.open(worst[0]).height >= TILE


def test_worst_case_captions():
    positive = {"name": "cju0.jpg", "positive": True, "dice": 0.125, "predicted_area": 0.2}
    negative = {"name": "free1.jpg", "positive": False, "dice": 0.0, "predicted_area": 0.034}
    assert panel_title(positive) == "cju0.jpg: dice 0.12"
    assert panel_title(negative) == "free1.jpg: no foreground, 3.4% flagged"


def _blue_pixels(fig) -> int:
    """Pixels of matplotlib's first colour (C0, the training curve) in the drawn figure."""
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    return int((np.abs(rgb - [31, 119, 180]).sum(2) < 40).sum())


def test_curves_of_one_epoch_show_points_and_name_the_side_losses():
    row = {"epoch": 1, "train_loss": 3.1, "val_loss": 1.85, "val_mDice_point": 0.4,
           "val_mIoU_point": 0.3}
    fig = curves_figure([row], side_losses=True)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0] == "train (incl. side losses)"
    assert _blue_pixels(fig) > 20  # a visible marker, not empty axes
    plain = curves_figure([row, {**row, "epoch": 2}])
    assert [t.get_text() for t in plain.axes[0].get_legend().get_texts()][0] == "train"


def test_no_pyplot_in_the_sources():
    uses = re.compile(r"import\s+matplotlib\.pyplot|from\s+matplotlib\s+import\s+pyplot|"
                      r"matplotlib\.use\(")
    users = [str(p.relative_to(REPO)) for p in (REPO / "src").rglob("*.py")
             if uses.search(p.read_text())]
    assert users == []


def test_plotting_leaves_the_users_backend_alone(tmp_path):
    code = f"""
import sys
import matplotlib
matplotlib.use("pdf")
from unetkit.io.plots import plot_curves
rows = [{{"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_mDice_point": 0.5,
          "val_mIoU_point": 0.4}}]
plot_curves(rows, {str(tmp_path / "curves.png")!r})
assert matplotlib.get_backend() == "pdf", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
"""
    proc = subprocess.run([sys.executable, "-c", code], env=process_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "curves.png").size == (1000, 380)
