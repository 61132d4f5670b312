"""Multi-class mask decoding: noisy JPEG colour masks, palette PNGs, index PNGs, real NeoPolyp."""

from __future__ import annotations

import numpy as np
from PIL import Image

from conftest import real_data
from unetkit import config
from unetkit.io.images import MaskDecoder, open_image, read_mask
from unetkit.runs.folder import model_card

NEOPOLYP_COLORS = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]


def neopolyp_rule(rgb: np.ndarray) -> np.ndarray:
    """The data README's rule, written independently: red or green by the dominant channel when
    that channel is bright (> 127), else background."""
    rgb = rgb.astype(np.int32)
    dominant, bright = rgb.argmax(-1), rgb.max(-1) > 127
    return np.where(bright & (dominant == 0), 1, np.where(bright & (dominant == 1), 2, 0))


def labels_image(h=60, w=80) -> np.ndarray:
    labels = np.zeros((h, w), np.uint8)
    labels[10:30, 10:40] = 1
    labels[35:55, 45:75] = 2
    return labels


def test_noisy_jpeg_colour_mask_decodes_to_the_drawn_classes(tmp_path):
    labels = labels_image()
    rgb = np.asarray(NEOPOLYP_COLORS, np.uint8)[labels]
    path = tmp_path / "mask.jpeg"
    Image.fromarray(rgb).save(path, quality=60)  # strong JPEG noise at the class borders
    noisy = np.asarray(Image.open(path))
    assert len(np.unique(noisy.reshape(-1, 3), axis=0)) > 20  # really noisy
    decoded = read_mask(path, MaskDecoder("color", 3, colors=NEOPOLYP_COLORS))
    # Away from the borders JPEG noise cannot flip a class; at them a few pixels may.
    assert (decoded == labels).mean() > 0.99
    assert (decoded == neopolyp_rule(noisy)).all()


def test_nearest_colour_equals_the_dominant_bright_channel_rule_for_neopolyp_colours():
    """For black/red/green, 'nearest colour' is exactly the README's rule: red is nearer than
    black iff r > 127.5, and nearer than green iff r > g (blue is equidistant from all three).
    Checked on every (r, g) pair at several blue values, ties included."""
    r, g = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    decoder = MaskDecoder("color", 3, colors=NEOPOLYP_COLORS)
    for b in (0, 60, 120):
        rgb = np.stack([r, g, np.full_like(r, b)], -1).astype(np.uint8)
        decoded = decoder.decode(Image.fromarray(rgb))
        assert (decoded == neopolyp_rule(rgb)).all()


def test_palette_png_decodes_through_its_palette_as_colour_or_as_index(tmp_path):
    labels = labels_image()
    img = Image.fromarray(labels, mode="P")
    img.putpalette(sum(NEOPOLYP_COLORS, []) + [0] * (256 - 3) * 3)
    path = tmp_path / "mask.png"
    img.save(path)
    assert open_image(path).mode == "P"
    assert (read_mask(path, MaskDecoder("color", 3, colors=NEOPOLYP_COLORS)) == labels).all()
    assert (read_mask(path, MaskDecoder("index", 3)) == labels).all()


def test_index_png_with_ignore_value(tmp_path):
    labels = labels_image()
    labels[0, :] = 255  # an unlabelled border row
    path = tmp_path / "mask.png"
    Image.fromarray(labels).save(path)
    decoder = MaskDecoder("index", 3, ignore_index=255)
    mask = read_mask(path, decoder)
    assert (mask == labels).all()
    assert decoder.problems(open_image(path), mask) == []
    # Without the ignore index declared, 255 is not a class: the check says so.
    strict = MaskDecoder("index", 3)
    assert "not class indices" in strict.problems(open_image(path), mask)[0]


def test_colour_mask_with_undeclared_colour_is_reported():
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[:10] = [0, 0, 255]  # blue: not a NeoPolyp colour
    decoder = MaskDecoder("color", 3, colors=NEOPOLYP_COLORS)
    img = Image.fromarray(rgb)
    assert "far from every colour" in decoder.problems(img, decoder.decode(img))[0]


def test_classes_and_encoding_travel_with_the_run():
    cfg = config.load("neopolyp-unet3")
    card = model_card(cfg)
    assert card["classes"] == ["background", "neoplastic", "non_neoplastic"]
    assert card["mask_encoding"] == "color"
    assert card["class_colors"] == NEOPOLYP_COLORS
    assert card["out_channels"] == 3


def test_binary_masks_take_the_same_decoder(tmp_path):
    grey = (labels_image() > 0).astype(np.uint8) * 255
    path = tmp_path / "m.jpg"
    Image.fromarray(grey).save(path, quality=70)
    assert (read_mask(path, MaskDecoder("binary", 2)) == (grey > 0)).mean() > 0.995


def test_real_neopolyp_masks_agree_with_the_readme_rule():
    root = real_data("bkai-igh-neopolyp")
    files = sorted((root / "train_gt").glob("*.jpeg"))[::50]  # 20 masks spread over the set
    decoder = MaskDecoder("color", 3, colors=NEOPOLYP_COLORS)
    seen = np.zeros(3)
    for path in files:
        img = open_image(path)
        mask = decoder.decode(img)
        assert (mask == neopolyp_rule(np.asarray(img.convert("RGB")))).all(), path
        assert decoder.problems(img, mask) == [], path
        seen += np.bincount(mask.ravel(), minlength=3)
    assert (seen > 0).all()  # the sample holds all three classes
