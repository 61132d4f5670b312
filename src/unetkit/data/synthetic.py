"""A deterministic synthetic polyp data set: textured pink mucosa with rounded, shaded lesions.

It lets `unetkit demo` and the tests train on real files without downloading anything. Each
image is built from its index alone (seeded), so the same call always writes the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bicubically."""
    coarse = (rng.random((cells, cells)) * 255).astype(np.uint8)
    up = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    return np.asarray(up, dtype=np.float32) / 255


def make_sample(index: int, size: int = 128, seed: int = 0,
                num_lesion_classes: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One (image (size, size, 3) uint8, mask (size, size) uint8 class index) pair.

    Lesions take class 1..num_lesion_classes; with two lesion classes the second kind is paler
    and flatter, like a non-neoplastic polyp beside a neoplastic one.
    """
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Mucosa: pink, with blotches, fine texture, a few dark vessels and vignetting.
    base = np.array([205, 115, 110], np.float32) + rng.normal(0, 8, 3)
    blotch = _smooth_noise(rng, size, 6) - 0.5
    fine = rng.normal(0, 5, (size, size, 1))
    img = base + blotch[..., None] * np.array([50, 40, 35]) + fine
    for _ in range(rng.integers(2, 5)):  # vessels: dark red sinusoid ribbons
        a, f, ph = rng.uniform(5, 20), rng.uniform(0.02, 0.08), rng.uniform(0, 6.28)
        y0 = rng.uniform(0, size)
        line = np.abs(yy - (y0 + a * np.sin(f * xx + ph)))
        img -= (np.exp(-(line / 1.2) ** 2) * 40)[..., None] * np.array([0.6, 1.0, 1.0])
    r2 = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size / 2) ** 2
    img *= (1 - 0.35 * r2)[..., None]  # the endoscope's light falls off towards the edges
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, 3)):
        cls = int(rng.integers(1, num_lesion_classes + 1))
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        ra, rb = rng.uniform(0.08, 0.2, 2) * size
        theta = rng.uniform(0, np.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / ra
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / rb
        wobble = 1 + 0.12 * _smooth_noise(rng, size, 4)  # not a perfect ellipse
        d = np.sqrt(u**2 + v**2) / wobble
        inside = d < 1
        dome = np.sqrt(np.clip(1 - d**2, 0, 1))  # shading of a rounded bump lit from the front
        color = np.array([225, 105, 95] if cls == 1 else [235, 160, 150], np.float32)
        strength = 0.85 if cls == 1 else 0.6
        texture = 1 + 0.08 * (_smooth_noise(rng, size, 24) - 0.5)
        lesion = color * (0.75 + 0.35 * dome[..., None]) * texture[..., None]
        alpha = (np.clip((1 - d) * 6, 0, 1) * strength)[..., None]
        img = img * (1 - alpha) + lesion * alpha
        rim = np.exp(-((d - 1) / 0.06) ** 2)  # a darker rim where the bump meets the wall
        img -= (rim * 25)[..., None]
        mask[inside] = cls
    for _ in range(rng.integers(1, 4)):  # specular highlights, on lesions and wall alike
        hx, hy, hr = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1, 3)
        spot = np.exp(-(((xx - hx) ** 2 + (yy - hy) ** 2) / hr**2))
        img = img + spot[..., None] * (255 - img)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def write_dataset(root: str | Path, count: int = 200, size: int = 128, seed: int = 0,
                  num_lesion_classes: int = 1) -> Path:
    """Write `count` pairs as root/images/*.jpg and root/masks/*.png (the Kvasir-SEG layout;
    masks 0/255 for one lesion class, class indices otherwise). Returns root."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img, mask = make_sample(i, size, seed, num_lesion_classes)
        Image.fromarray(img).save(root / "images" / f"synth_{i:04d}.jpg", quality=92)
        out = mask * 255 if num_lesion_classes == 1 else mask
        Image.fromarray(out).save(root / "masks" / f"synth_{i:04d}.png")
    return root
