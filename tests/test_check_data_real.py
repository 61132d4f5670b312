"""`check-data` on every real data set beside the checkout, as a user would first run it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import real_data, run_cli

# (data set, recipe that reads it, image/mask pairs: the counts its README states)
DATA_SETS = [("kvasir-seg", "kvasir-binary", 1000),
             ("bkai-igh-neopolyp", "neopolyp-resnet34", 1000),
             ("isbi2012-em", "isbi-greyscale", 30),
             ("cvc-colondb", None, 380)]


@pytest.mark.slow
@pytest.mark.parametrize("name, recipe, pairs", DATA_SETS, ids=[d[0] for d in DATA_SETS])
def test_check_data_pairs_every_image_and_shows_the_masks(tmp_path, name, recipe, pairs):
    root = real_data(name)
    sheet = tmp_path / "sheet.png"
    args = ["check-data", str(root), "--quiet", "--out", str(sheet)]
    proc = run_cli(*args, *(["--recipe", recipe] if recipe else []))
    assert f"{root}: {pairs} image/mask pairs, no problems found" in proc.stdout, proc.stdout
    assert len(proc.stdout.splitlines()) < 15  # a short report, not a line per image
    picture = np.asarray(Image.open(sheet).convert("RGB"))
    # image | decoded mask | overlay, a few pairs, tiles large enough to see a polyp
    assert picture.shape[0] >= 256 and picture.shape[1] >= 3 * 256, picture.shape
    # photographs (ISBI: grey) with their overlays: hundreds of colours, not blank tiles
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 200


def test_check_data_on_colour_masks_without_a_recipe_names_the_recipe_that_reads_them(
        tmp_path):
    root = real_data("bkai-igh-neopolyp")
    copy = tmp_path / "neopolyp"  # 30 of its pairs, in its own layout: seconds, not minutes
    for sub in ("train", "train_gt"):
        (copy / sub).mkdir(parents=True)
        for path in sorted((root / sub).glob("*.jpeg"))[:30]:
            (copy / sub / path.name).symlink_to(path)
    proc = run_cli("check-data", str(copy), "--quiet", "--out", str(tmp_path / "sheet.png"),
                   check=False)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert "--recipe neopolyp-resnet34" in out and "red" in out and "green" in out, out
    assert len(out.splitlines()) < 15, out  # grouped: not one line per mask
