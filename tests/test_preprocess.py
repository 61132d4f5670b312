"""One preprocessing path: the same image file gives the network bit-identical input through
training (decoded arrays -> the Trainer's batch) and through prediction (a Predictor built from
the run folder's config.json), for JPEGs much larger than the training size (where a reduced-scale
JPEG decode would differ), EXIF-rotated photos, PNGs and greyscale models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unetkit import config as config_mod
from unetkit.data.preprocess import Preprocess
from unetkit.inference.predictor import Predictor
from unetkit.io.images import open_image
from unetkit.runs.check import read_model_card, run_config
from unetkit.runs.folder import write_model_card
from unetkit.training.trainer import Trainer


def smooth_photo(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like image: smooth gradients and blobs (JPEG-friendly, as endoscopy frames)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    channels = [127 + 100 * np.sin(xx * rng.uniform(3, 9) + yy * rng.uniform(3, 9)
                                  + rng.uniform(0, 6))
                for _ in range(3)]
    return np.clip(np.stack(channels, -1) + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def write_data(root, sizes) -> dict[str, str]:
    """A Kvasir-layout folder: JPEG, EXIF-rotated JPEG and PNG images of other sizes than the
    training size, with binary masks. Returns stem -> image path."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    paths = {}
    for i, (h, w) in enumerate(sizes):
        img = smooth_photo(h, w, i)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4:h // 2, w // 3:w // 2] = 255
        kind = ("jpg", "exif", "png")[i % 3]
        path = root / "images" / f"img{i}.{'png' if kind == 'png' else 'jpg'}"
        if kind == "exif":  # stored landscape, shown portrait (orientation 6): mask as shown
            exif = Image.Exif()
            exif[0x0112] = 6
            Image.fromarray(img).save(path, quality=90, exif=exif)
            mask = np.zeros((w, h), np.uint8)
            mask[w // 4:w // 2, h // 3:h // 2] = 255
        elif kind == "jpg":
            Image.fromarray(img).save(path, quality=90)
        else:
            Image.fromarray(img).save(path)
        Image.fromarray(mask).save(root / "masks" / f"img{i}.png")
        paths[f"img{i}"] = str(path)
    return paths


@pytest.mark.parametrize("channels, mean", [(3, None), (3, [0.485, 0.456, 0.406]), (1, [0.5])])
def test_training_and_prediction_feed_the_network_identical_pixels(tmp_path, channels, mean):
    paths = write_data(tmp_path / "data", [(389, 517), (300, 411), (257, 263), (480, 640),
                                           (333, 500), (96, 128)])
    sets = ["model.base_channels=4", "model.depth=2", "data.image_size=[40, 56]",
            "data.split.val_fraction=0.5", "train.device='cpu'", "train.samples=0",
            f"model.in_channels={channels}"]
    if mean is not None:
        sets += [f"data.mean={mean}", f"data.std={[0.25] * channels}"]
    cfg = config_mod.load(overrides=sets, data_root=str(tmp_path / "data"))
    trainer = Trainer(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    write_model_card(tmp_path / "run", cfg)  # what `unetkit train` saves with the weights
    saved = run_config(tmp_path / "run")
    card, pre = read_model_card(tmp_path / "run"), Preprocess.from_config(cfg).to_dict()
    # the input's size and normalisation once, in the summary; how pixels get there beside them
    assert {**card["preprocess"], **{k: card[k] for k in ("image_size", "mean", "std")}} == pre
    assert not {"image_size", "mean", "std"} & set(card["preprocess"])
    predictor = Predictor(trainer.model, saved)

    names = trainer.train_data.names + trainer.val_data.names
    assert sorted(names) == sorted(paths)
    for data, x, y in ((trainer.train_data, trainer.train_x, trainer.train_y),
                       (trainer.val_data, trainer.val_x, trainer.val_y)):
        for i, name in enumerate(data.names):
            trained_on, _ = trainer.batch(x, y, torch.tensor([i]), augment=False)
            predicted_on = predictor.inputs([predictor.read(paths[name])])
            assert trained_on.shape == (1, channels, 40, 56)
            assert trained_on.dtype == predicted_on.dtype == torch.float32
            assert torch.equal(trained_on, predicted_on), name


def test_no_reduced_scale_jpeg_decode(tmp_path):
    """The check above can fail: libjpeg's draft mode (what training used to decode with) gives
    other pixels than the full decode both paths now share."""
    path = tmp_path / "big.jpg"
    Image.fromarray(smooth_photo(480, 640, 0)).save(path, quality=90)
    pre = Preprocess((40, 56), 3, [0.0] * 3, [1.0] * 3)
    drafted = Image.open(path)
    drafted.draft("RGB", (56, 56))
    assert drafted.size != (640, 480)  # really decoded at reduced scale
    draft_pixels = pre.resize(np.asarray(drafted.convert("RGB")))
    assert not np.array_equal(draft_pixels, pre.load(path))
    assert open_image(path).size == (640, 480)


def test_preprocess_needs_resolved_normalisation_and_one_value_per_channel():
    cfg = config_mod.load()
    with pytest.raises(ValueError, match="resolve_normalisation"):
        Preprocess.from_config(cfg)
    with pytest.raises(ValueError, match="one value per input channel"):
        Preprocess((8, 8), 3, [0.5], [0.25])
