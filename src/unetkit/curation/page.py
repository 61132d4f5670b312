"""The audit page: audit.html and its PNG thumbnails in audit_files/ beside it.

One row per suspicious image, most suspicious first: the image | its mask | the model's
prediction | the difference (magenta: in the mask only, yellow: in the prediction only, grey:
both), the suspicion score and, in words, why it was flagged. Below, the near-duplicate frames
found in two different splits.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image

from unetkit.core.files import write_text
from unetkit.io.images import read_image
from unetkit.io.plots import overlay, save_png

FILES = "audit_files"  # the thumbnails' folder, beside audit.html
MASK_ONLY, PRED_ONLY, BOTH = (255, 0, 255), (255, 220, 0), (150, 150, 150)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 24px 0 6px; }
p.note { margin: 2px 0 10px; color: #555; font-size: 13px; }
table { border-collapse: collapse; }
td, th { border-top: 1px solid #ddd; padding: 6px; vertical-align: top; font-size: 13px; }
th { text-align: left; background: #f4f4f4; }
td.why { max-width: 300px; } td.why li { margin-bottom: 3px; }
img { display: block; max-width: 220px; max-height: 200px; }
.score { font-size: 18px; font-weight: 600; }
.key span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 10px;
            vertical-align: -1px; }
"""


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An (H, W, C) uint8 image resized to (h, w) for a thumbnail."""
    arr = image[..., 0] if image.shape[2] == 1 else image
    out = np.asarray(Image.fromarray(arr).convert("RGB").resize((size[1], size[0]),
                                                                 Image.BILINEAR))
    return out


def difference(image: np.ndarray, mask: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The dimmed image with mask-only, prediction-only and shared foreground in colour."""
    out = (image.astype(np.float32) * 0.35).astype(np.uint8)
    m, q = mask > 0, pred > 0
    for where, colour in ((m & ~q, MASK_ONLY), (q & ~m, PRED_ONLY), (m & q, BOTH)):
        out[where] = colour
    return out


def write_thumbnails(folder: Path, key: str, image: np.ndarray, mask: np.ndarray,
                     pred: np.ndarray, palette: np.ndarray) -> dict[str, str]:
    """image, mask, prediction and difference PNGs of one image; {kind: path relative to the
    page}."""
    small = shrink(image, mask.shape)
    tiles = {"image": small, "mask": overlay(small, mask, palette),
             "prediction": overlay(small, pred, palette),
             "difference": difference(small, mask, pred)}
    out = {}
    for kind, arr in tiles.items():
        save_png(folder / f"{key}-{kind}.png", arr)
        out[kind] = f"{FILES}/{key}-{kind}.png"
    return out


def image_thumbnail(folder: Path, key: str, path: Path, side: int = 200) -> str:
    image = read_image(path)
    h, w = image.shape[:2]
    scale = side / max(h, w)
    save_png(folder / f"{key}.png", shrink(image, (max(1, round(h * scale)),
                                                   max(1, round(w * scale)))))
    return f"{FILES}/{key}.png"


def write_page(path: Path, title: str, rows: list[dict], thumbs: list[dict[str, str]],
               duplicates: list[dict], dup_thumbs: list[tuple[str, str]], summary: str) -> None:
    """audit.html: `rows` (ranked) with their `thumbs`, then the cross-split `duplicates`."""
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{e(title)}</h1>",
             f"<p class='note'>{e(summary)}</p>",
             "<p class='note key'>difference:<span style='background:rgb(255,0,255)'></span>"
             "in the mask only<span style='background:rgb(255,220,0)'></span>in the prediction "
             "only<span style='background:rgb(150,150,150)'></span>in both</p>",
             "<table><tr><th>#</th><th>image</th><th>mask</th><th>prediction</th>"
             "<th>difference</th><th>why it was flagged</th></tr>"]
    for row, thumb in zip(rows, thumbs, strict=True):
        why = "".join(f"<li>{e(r)}</li>" for r in row["reasons"].split("; ") if r) or \
            "<li>mask and model agree</li>"
        cells = "".join(f"<td><img src='{e(thumb[k])}' alt='{e(k)} of {e(row['image'])}'>"
                        "</td>" for k in ("image", "mask", "prediction", "difference"))
        extra = f"<br>near-duplicate of {e(row['near_duplicates'])}" \
            if row.get("near_duplicates") else ""
        parts.append(f"<tr><td>{row['rank']}</td>{cells}<td class='why'>"
                     f"<div class='score'>{row['suspicion']:.2f}</div><b>{e(row['image'])}</b>"
                     f" ({e(row['split'] or 'no split')}, judged by {e(row['judged_by'])}): "
                     f"Dice {row['dice']:.2f}<ul>{why}</ul>{extra}</td></tr>")
    parts.append("</table>")
    cross = [d for d in duplicates if d["cross_split"]]
    parts.append(f"<h2>Near-duplicate frames across splits ({len(cross)})</h2>")
    if not cross:
        parts.append("<p class='note'>none found</p>")
    else:
        parts.append("<p class='note'>the same frame in two splits: a model trained on one "
                     "copy is tested on the other, which inflates its scores</p><table><tr>"
                     "<th>image</th><th>near-duplicate</th><th>why it was flagged</th></tr>")
        for d, (ta, tb) in zip(cross, dup_thumbs, strict=False):
            parts.append(f"<tr><td><img src='{e(ta)}' alt='{e(d['image_a'])}'></td>"
                         f"<td><img src='{e(tb)}' alt='{e(d['image_b'])}'></td><td class='why'>"
                         f"<b>{e(d['image_a'])}</b> ({e(d['split_a'])}) and <b>"
                         f"{e(d['image_b'])}</b> ({e(d['split_b'])}): perceptual hashes "
                         f"{d['distance']} and {d['dhash_distance']} of 64 bits apart (phash, "
                         "dhash): near-duplicate frames in the "
                         f"{e(d['split_a'])} and {e(d['split_b'])} splits</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    write_text(path, "\n".join(parts))
