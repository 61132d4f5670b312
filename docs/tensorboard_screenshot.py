"""docs/tensorboard-two-runs.png: TensorBoard comparing two unetkit runs, in headless Chromium.

Trains two small CPU runs on a synthetic set (learning rates 1e-3 and 3e-3) with
`train.loggers=[tensorboard]`, serves their folder with `tensorboard --logdir` on a port the OS
picks, photographs the scalars page with Playwright driving the system's Chromium (`make
browser` installs it) and stops the server.

    python docs/tensorboard_screenshot.py            # about 6 minutes on 2 busy CPU cores
    python docs/tensorboard_screenshot.py --runs DIR # keep the runs in DIR (trained once)
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from unetkit import config as config_mod  # noqa: E402
from unetkit.data.synthetic import write_dataset  # noqa: E402
from unetkit.training.fit import fit  # noqa: E402

OUT = REPO / "docs" / "tensorboard-two-runs.png"


def serve(logdir: Path) -> tuple[subprocess.Popen, str]:
    """`tensorboard --logdir` on a port the OS picks (--port 0); its URL once it answers."""
    exe = Path(sys.executable).with_name("tensorboard")
    proc = subprocess.Popen([str(exe), "--logdir", str(logdir), "--host", "127.0.0.1",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    for line in proc.stdout:  # it prints "TensorBoard 2.x at http://127.0.0.1:PORT/" when ready
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if found:
            return proc, found.group(1)
    raise RuntimeError(f"tensorboard exited ({proc.wait()}) without serving")


def train_runs(runs: Path) -> None:
    data = write_dataset(runs.parent / "data", count=64, size=64)
    for lr in ("1e-3", "3e-3"):
        if not (runs / f"synthetic-lr{lr}" / "model.safetensors").exists():
            cfg = config_mod.load(None, None, [
                "model.base_channels=8", "model.depth=3", "data.image_size=[64,64]",
                "train.epochs=8", "train.batch_size=8", "train.device=cpu", f"train.lr={lr}",
                "train.loggers=[tensorboard]", "train.log_images_every=2"], str(data))
            fit(cfg, runs / f"synthetic-lr{lr}", progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", help="the folder of the two runs (default: a temporary one)")
    args = parser.parse_args()
    browser = shutil.which("chromium")
    if not browser:
        sys.exit("no chromium: run `make browser` (Debian's Chromium) first")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = Path(args.runs) if args.runs else tmp / "runs"
        train_runs(runs)
        proc, url = serve(runs)
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                chrome = p.chromium.launch(executable_path=browser, headless=True)
                page = chrome.new_page(viewport={"width": 1300, "height": 1000})
                page.goto(url + "#timeseries", wait_until="networkidle")
                page.wait_for_selector("text=samples", timeout=60_000)
                page.fill("input[placeholder='Filter tags (regex)']", "loss|val_m")
                page.wait_for_selector("text=val_mDice_point", timeout=60_000)
                page.keyboard.press("Escape")  # the tag list's completions
                page.locator("button:has-text('Settings')").first.click()  # hides that pane
                time.sleep(3)  # let the charts finish drawing (a picture, not a test)
                page.screenshot(path=str(tmp / "shot.png"))
                chrome.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        image = Image.open(tmp / "shot.png").convert("RGB")
        image.quantize(colors=128).save(OUT, optimize=True)  # small enough for the README
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
