"""`unetkit serve`: region counting, upload reading, and the real page driven in a real browser.

The end-to-end tests start `unetkit serve` in a subprocess on a free port, drive the page in
headless Chromium (Debian's package, through Playwright) and call the programmatic API with
gradio_client, and compare what both show with what `unetkit predict` writes for the same image.
Locally they skip when Gradio, Playwright or Chromium is missing; under CI (CI set) a missing
piece is a failure, so that a broken install step cannot pass as a skip.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import process_env, run_cli, start_server
from unetkit import config as config_mod
from unetkit.core.extras import MissingExtra
from unetkit.data.preprocess import resolve_normalisation
from unetkit.data.synthetic import make_sample
from unetkit.deploy.page import MAX_SIDE, ModelPage, mask_stats, read_upload
from unetkit.inference.predictor import Predictor
from unetkit.inference.summary import count_components as count_regions
from unetkit.io.budget import ImageError
from unetkit.models.unet import build_model
from unetkit.runs.folder import save_weights, write_model_card

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# In the run folder's config.json, so the test can see the page shows the run's own scores.
CARD_METRICS = {"epoch": 3, "split": "val", "mDice_point": 0.4321, "mIoU_point": 0.3456,
                "dice": 0.5012, "iou": 0.3344, "precision": 0.61, "recall": 0.55}


def need(module: str | None = None, path: Path | None = None, why: str = "") -> None:
    """Skip (or fail under CI, which installs everything) when a module or file is missing."""
    missing = (module and importlib.util.find_spec(module) is None) or (path and not path.exists())
    if missing:
        what = module or path
        msg = f"{what} is not installed ({why}); `make install` installs it"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run this test: {msg}")
        pytest.skip(msg)


def bfs_regions(mask: np.ndarray) -> int:
    """An independent, obvious 8-connected component count (slow: test sizes only)."""
    mask = np.asarray(mask, bool)
    seen = np.zeros_like(mask)
    h, w = mask.shape
    count = 0
    for y, x in zip(*np.nonzero(mask), strict=False):
        if seen[y, x]:
            continue
        count += 1
        seen[y, x] = True
        queue = deque([(y, x)])
        while queue:
            cy, cx = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
    return count


# ---------------------------------------------------------------- fast tests, no Gradio needed

def test_count_regions_matches_a_plain_flood_fill():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 40), (40, 1), (37, 53), (64, 64)]:
        for density in (0.0, 0.1, 0.4, 0.6, 1.0):
            mask = rng.random(shape) < density
            assert count_regions(mask) == bfs_regions(mask), (shape, density)


def test_count_regions_uses_8_connectivity():
    diagonal = np.eye(5, dtype=bool)  # touching at corners only: one region
    assert count_regions(diagonal) == 1
    two = np.zeros((5, 7), bool)
    two[1:3, 1:3] = True
    two[1:3, 4:6] = True  # one empty column between: two regions
    assert count_regions(two) == 2
    ring = np.ones((6, 6), bool)
    ring[2:4, 2:4] = False  # a ring is one region, its hole is not counted
    assert count_regions(ring) == 1


def test_mask_stats_counts_area_fraction_and_regions_per_class():
    labels = np.zeros((10, 10), np.uint8)
    labels[0:2, 0:2] = 1
    labels[5:7, 5:7] = 1
    labels[9, :] = 2
    stats = mask_stats(labels, ["background", "a", "b"])
    assert stats == {"a": {"area_px": 8, "area_fraction": 0.08, "regions": 2},
                     "b": {"area_px": 10, "area_fraction": 0.10, "regions": 1}}


def test_read_upload_converts_modes_shrinks_huge_images_and_names_bad_files(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((20, 30), 77, np.uint8)).save(grey)
    arr, note = read_upload(grey, 3)
    assert arr.shape == (20, 30, 3) and (arr == 77).all() and note == ""

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[0, 0, 3] = 0  # transparent pixel: black, as in training
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    arr, _ = read_upload(tmp_path / "rgba.png", 3)
    assert arr.shape == (8, 8, 3) and tuple(arr[1, 1]) == (200, 0, 0)
    assert tuple(arr[0, 0]) == (0, 0, 0)

    big = tmp_path / "big.jpg"  # a 12-megapixel photo: decoded reduced, then shrunk to MAX_SIDE
    Image.new("RGB", (4000, 3000), (120, 60, 30)).save(big, quality=80)
    arr, note = read_upload(big, 3)
    assert max(arr.shape[:2]) == MAX_SIDE and arr.shape[:2] == (1536, 2048)
    assert "reduced from 4000x3000" in note

    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="notes.txt: cannot read this image"):
        read_upload(text, 3)


def test_missing_gradio_says_how_to_install(monkeypatch):
    from unetkit.deploy.serve import import_gradio

    monkeypatch.setitem(sys.modules, "gradio", None)  # makes `import gradio` fail
    with pytest.raises(MissingExtra, match=r"pip install 'unetkit\[serve\]'"):
        import_gradio()


# ---------------------------------------------------------------- a run folder and a server

def build_run(run_dir: Path, image: np.ndarray) -> Path:
    """A tiny run folder built with the library in a second, instead of a training run: an
    untrained U-Net whose 1x1 output layer is rescaled so that, on `image`, about 30% of pixels
    are foreground in many separate regions. A barely trained model predicts nothing at all,
    which would make "the numbers match" an empty check; this mask is large and irregular."""
    cfg = config_mod.load("demo", overrides=["model.base_channels=4", "model.depth=2",
                                             "data.image_size=[64,64]"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    resolve_normalisation(cfg, model)
    predictor = Predictor(model, cfg, "cpu")
    small = np.array(Image.fromarray(image).resize((64, 64), Image.BILINEAR))
    logits = predictor.logits(predictor.preprocess(small[None]))
    cut, scale = torch.quantile(logits.flatten(), 0.7), 8 / logits.std()
    with torch.no_grad():
        model.head.weight *= scale
        model.head.bias.copy_(scale * (model.head.bias - cut))
    save_weights(model, run_dir / "model.safetensors")
    write_model_card(run_dir, cfg, CARD_METRICS)
    return run_dir


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, run folder, test image, `unetkit predict`'s mask) with `unetkit serve` running."""
    need("gradio", why="the optional extra unetkit[serve]")
    root = tmp_path_factory.mktemp("serve")
    image = make_sample(0, 160, seed=5)[0]
    image_path = root / "polyp.png"
    Image.fromarray(image).save(image_path)
    run_dir = build_run(root / "run", image)
    run_cli("predict", str(run_dir), str(image_path), "--out", str(root / "predicted"), "--quiet")
    expected = np.asarray(Image.open(root / "predicted" / "polyp.png")) > 0

    env = process_env(GRADIO_ANALYTICS_ENABLED="False")
    proc, url, _ = start_server(["serve", str(run_dir)], env, root / "serve.log")
    try:
        yield url, run_dir, image_path, expected
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_page_in_a_browser_shows_the_model_the_mask_and_the_numbers_of_unetkit_predict(
        served, tmp_path):
    need("playwright", why="drives the browser test")
    need(path=CHROMIUM, why="Debian's chromium package: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    url, run_dir, image_path, expected = served
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url, timeout=60_000)
            card = page.locator("#model-card").inner_text(timeout=60_000)
            assert "demo: binary segmentation" in card
            assert "background, lesion" in card and "64x64" in card
            # from the run's config.json
            assert "mDice@point 0.4321" in card and "mIoU@point 0.3456" in card
            assert "Not a medical device" in card

            page.set_input_files("#uploads input[type=file]", [str(image_path), str(notes)])
            page.wait_for_selector("#stats table", timeout=120_000)
            cells = [c.strip() for c in
                     page.locator("#stats table tbody tr").first.locator("td").all_inner_texts()]
            status = page.locator("#status").inner_text()
            shown = page.locator("#results img").count()
            downloads = [page.locator("#masks a").nth(i).get_attribute("href") or ""
                         for i in range(page.locator("#masks a").count())]
            page.screenshot(path=str(tmp_path / "serve_page.png"), full_page=True)
        finally:
            browser.close()
    shot = np.asarray(Image.open(tmp_path / "serve_page.png").convert("RGB"))
    assert shot.shape[1] == 1200 and shot.shape[0] >= 900  # the whole page, as laid out
    # the page shows pictures (the input, the mask, the overlay), not only text on a background
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 200
    assert shown >= 3  # input, mask and overlay
    assert any(href.endswith("/polyp.png") for href in downloads), downloads  # mask offered
    assert "notes.txt" in status and "not an image unetkit can read" in status
    # The numbers on the page are those of `unetkit predict`'s mask for the same image.
    area, regions = int(expected.sum()), bfs_regions(expected)
    assert area > 0.1 * expected.size and regions > 1  # a real, non-trivial mask to compare
    assert cells[:2] == ["polyp.png", "lesion"]
    assert int(cells[2]) == area and int(cells[4]) == regions
    assert float(cells[3]) == pytest.approx(100 * area / expected.size, abs=0.005)


@pytest.mark.slow
def test_programmatic_api_returns_the_mask_of_unetkit_predict(served, tmp_path):
    need("gradio_client", why="comes with the optional extra unetkit[serve]")
    from gradio_client import Client, handle_file

    url, run_dir, image_path, expected = served
    client = Client(url, verbose=False, download_files=str(tmp_path))
    mask_file, info = client.predict(handle_file(str(image_path)), False, 0.5,
                                     api_name="/segment")
    mask = np.asarray(Image.open(mask_file))
    assert set(np.unique(mask)) <= {0, 255}  # the same 0/255 PNG that `unetkit predict` writes
    np.testing.assert_array_equal(mask > 0, expected)
    assert info["size"] == list(expected.shape)
    assert info["stats"]["lesion"]["area_px"] == int(expected.sum())
    assert info["stats"]["lesion"]["regions"] == bfs_regions(expected)
    # Requests sent at once wait in the queue and all get their answer.
    jobs = [client.submit(handle_file(str(image_path)), False, 0.5, api_name="/segment")
            for _ in range(4)]
    for job in jobs:
        np.testing.assert_array_equal(np.asarray(Image.open(job.result(timeout=120)[0])) > 0,
                                      expected)
    # A higher threshold can only shrink the mask.
    higher, _ = client.predict(handle_file(str(image_path)), False, 0.9, api_name="/segment")
    assert (np.asarray(Image.open(higher)) > 0).sum() < expected.sum()


def test_model_page_segments_like_predict_and_describes_the_run(tmp_path):
    """The page's own prediction path (no server): same labels as Predictor, the upload's
    name in errors, the run's scores and the warning in the description."""
    image = make_sample(1, 96, seed=5)[0]
    run_dir = build_run(tmp_path / "run", image)
    Image.fromarray(image).save(tmp_path / "x.jpg", quality=95)
    page = ModelPage(run_dir, "cpu")
    try:
        res = page.segment(tmp_path / "x.jpg", out_dir=tmp_path)
        from unetkit.io.images import read_image

        want = Predictor.from_run(run_dir, "cpu").predict([read_image(tmp_path / "x.jpg")])[0]
        np.testing.assert_array_equal(res["labels"], want)
        saved = np.asarray(Image.open(res["mask_path"]))
        np.testing.assert_array_equal(saved, want * 255)
        assert res["stats"]["lesion"]["area_px"] == int(want.sum())
        assert len(page.examples) == 3 and all(p.exists() for p in page.examples)
        text = page.describe()
        assert "mDice@point 0.4321" in text and "Not a medical device" in text
        (tmp_path / "upload.txt").write_text("hello")
        with pytest.raises(ImageError, match=re.escape("report.txt: cannot read")):
            page.segment(tmp_path / "upload.txt", name="report.txt")
    finally:
        page.close()


@pytest.mark.slow
def test_programmatic_api_returns_the_overlay_video_and_alarms(served, tmp_path):
    need("gradio_client", why="comes with the optional extra unetkit[serve]")
    import av
    from gradio_client import Client, handle_file

    url, run_dir, image_path, expected = served
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as c:  # the test image for 10 frames
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 160, 160, "yuv420p"
        for _ in range(10):
            c.mux(s.encode(av.VideoFrame.from_image(Image.open(image_path).convert("RGB"))))
        c.mux(s.encode(None))
    client = Client(url, verbose=False, download_files=str(tmp_path / "got"))
    overlay, alarms = client.predict(handle_file(str(video)), api_name="/video")
    path = overlay["video"] if isinstance(overlay, dict) else overlay
    with av.open(str(path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 10
    # the mask covers ~30% of every frame: one alarm, from the 3rd frame (3 of 5) to the end
    assert alarms["alarm_count"] == 1 and alarms["alarms"][0]["start_frame"] == 3
