"""How far one mask and a model's probabilities disagree, and why that makes the mask suspect.

All measures compare the foreground (every class but background) of the mask with the model's
foreground probability `p` (the sigmoid for binary models, 1 - P(background) otherwise) and its
prediction (`p >= threshold` for binary models, the argmax otherwise). They are computed at the
audit's working size (masks shrunk with nearest neighbour, probabilities bilinearly), so lengths
are given as fractions of the image diagonal, which do not depend on the resolution.

- `dice`: 2|M & P| / (|M| + |P|) (1 when both are empty);
- `boundary_mean`, `boundary_p95`: the symmetric boundary distance: for every outline pixel of
  the mask the distance to the prediction's outline and back, their mean and 95th percentile
  (the HD95 of the segmentation literature), over the diagonal; 1 when one side is empty;
- `missed_polyps`: connected components (8-connected, as `summary.count_components` counts) of
  the mask that the prediction covers less than 10 % of; `extra_polyps`: the same the other way.
  Components under `MIN_COMPONENT` of the image are specks and not counted;
- `area_ratio`: predicted area / mask area;
- `p_inside`, `p_outside`: the mean foreground probability inside and outside the mask;
- `confident_missing`: share of the mask where the model says background with p < 0.1;
  `confident_extra`: area where it says polyp with p > 0.9 outside the mask, over the mask area;
- `class_mismatch` (multi-class): share of the pixels both call polyp that get another class.

`suspicion` combines them into one score in [0, 1] (weights in `WEIGHTS`) and `reasons` says in
words what made an image suspect.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from unetkit.inference.summary import EIGHT  # 8-connectivity, as predict's summaries count

MIN_COMPONENT = 0.001  # components under 0.1 % of the image are specks, not polyps
COVERED = 0.10  # a component the other side covers less than this is "not in the other"
# Weights of the terms of the suspicion score (each term in [0, 1], see `suspicion`).
WEIGHTS = {"overlap": 0.35, "boundary": 0.2, "polyps": 0.15, "confidence": 0.2, "area": 0.1,
           "classes": 0.2}


def foreground_probability(probs: np.ndarray) -> np.ndarray:
    """(K, H, W) class probabilities (K=1: binary) -> (H, W) probability of any foreground."""
    return probs[0] if probs.shape[0] == 1 else 1.0 - probs[0]


def predicted_labels(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """(K, H, W) probabilities -> (H, W) uint8 class indices, as `Predictor.labels` decides."""
    if probs.shape[0] == 1:
        return (probs[0] >= threshold).astype(np.uint8)
    return probs.argmax(0).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of a boolean mask that touch the outside (4-neighbourhood)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def boundary_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Distances (pixels) from each outline pixel of `a` to the outline of `b` and back; None
    when either is empty."""
    oa, ob = outline(a), outline(b)
    if not oa.any() or not ob.any():
        return None
    to_b = ndimage.distance_transform_edt(~ob)
    to_a = ndimage.distance_transform_edt(~oa)
    return np.concatenate([to_b[oa], to_a[ob]])


def components(mask: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """The 8-connected components of a boolean mask with at least `min_pixels` pixels."""
    labelled, n = ndimage.label(mask, structure=EIGHT)
    if n == 0:
        return []
    sizes = np.bincount(labelled.ravel())
    return [labelled == i for i in range(1, n + 1) if sizes[i] >= min_pixels]


def uncovered(parts: list[np.ndarray], other: np.ndarray) -> list[np.ndarray]:
    """The components of which `other` covers less than COVERED."""
    return [c for c in parts if (c & other).sum() < COVERED * c.sum()]


def measure(mask: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict:
    """The disagreement measures of an (H, W) class-index mask and (K, H, W) probabilities of
    the same size (see the module's docstring)."""
    if mask.shape != probs.shape[1:]:
        raise ValueError(f"mask {mask.shape} and probabilities {probs.shape[1:]} differ in size")
    p = foreground_probability(probs).astype(np.float32)
    labels = predicted_labels(probs, threshold)
    m, q = mask > 0, labels > 0
    h, w = m.shape
    diagonal = math.hypot(h, w)
    am, aq = int(m.sum()), int(q.sum())
    inter = int((m & q).sum())
    dist = boundary_distances(m, q)
    min_pixels = max(1, round(MIN_COMPONENT * h * w))
    mask_parts, pred_parts = components(m, min_pixels), components(q, min_pixels)
    missed, extra = uncovered(mask_parts, q), uncovered(pred_parts, m)
    both = m & q
    out = {
        "dice": 1.0 if am + aq == 0 else 2 * inter / (am + aq),
        "boundary_mean": (0.0 if am + aq == 0 else 1.0) if dist is None
        else float(dist.mean() / diagonal),
        "boundary_p95": (0.0 if am + aq == 0 else 1.0) if dist is None
        else float(np.percentile(dist, 95) / diagonal),
        "mask_polyps": len(mask_parts),
        "predicted_polyps": len(pred_parts),
        "missed_polyps": len(missed),
        "extra_polyps": len(extra),
        "missed_area": sum(int(c.sum()) for c in missed) / (h * w),
        "extra_area": sum(int(c.sum()) for c in extra) / (h * w),
        "mask_area": am / (h * w),
        "predicted_area": aq / (h * w),
        "area_ratio": aq / am if am else (math.inf if aq else 1.0),
        "p_inside": float(p[m].mean()) if am else math.nan,
        "p_outside": float(p[~m].mean()) if am < h * w else math.nan,
        "confident_missing": float((m & (p < 0.1)).sum() / am) if am else 0.0,
        "confident_extra": float((~m & (p > 0.9)).sum() / max(am, min_pixels)),
        "class_mismatch": float((mask[both] != labels[both]).mean())
        if probs.shape[0] > 1 and both.any() else 0.0,
    }
    out["suspicion"] = suspicion(out, multiclass=probs.shape[0] > 1)
    out["reasons"] = reasons(out)
    return out


def terms(r: dict) -> dict[str, float]:
    """Each measure as a term in [0, 1]: 0 where mask and model agree, 1 at clear disagreement."""
    ratio = r["area_ratio"]
    log_ratio = 10.0 if ratio in (0.0, math.inf) else abs(math.log2(ratio))
    return {
        "overlap": 1.0 - r["dice"],
        "boundary": min(1.0, r["boundary_p95"] / 0.2),  # outlines a fifth of the diagonal apart
        "polyps": min(1.0, (r["missed_polyps"] + r["extra_polyps"]) / 2),
        "confidence": min(1.0, r["confident_missing"] + r["confident_extra"]),
        "area": min(1.0, log_ratio / 3),  # 8x more or less area
        "classes": r["class_mismatch"],
    }


def suspicion(r: dict, multiclass: bool = False) -> float:
    """The weighted mean of `terms` (the class term only for multi-class masks)."""
    t = terms(r)
    used = {k: w for k, w in WEIGHTS.items() if multiclass or k != "classes"}
    return sum(w * t[k] for k, w in used.items()) / sum(used.values())


def reasons(r: dict) -> str:
    """Why an image is suspect, in words ('' when mask and model agree)."""
    found = []
    if r["dice"] < 0.5:
        found.append(f"mask and prediction overlap little (Dice {r['dice']:.2f})")
    if r["missed_polyps"]:
        n = r["missed_polyps"]
        found.append(f"{n} polyp{'s' if n > 1 else ''} in the mask that the model does not see "
                     f"({r['missed_area']:.1%} of the image): wrong object marked?")
    if r["extra_polyps"]:
        n = r["extra_polyps"]
        found.append(f"the model sees {n} polyp{'s' if n > 1 else ''} the mask lacks "
                     f"({r['extra_area']:.1%} of the image): a polyp missed by the mask?")
    ratio = r["area_ratio"]
    if r["missed_polyps"] or r["extra_polyps"]:
        pass  # the polyps in one and not the other say it; their areas need no second reason
    elif 1.5 <= ratio < math.inf:
        found.append(f"the model's polyp area is {ratio:.1f}x the mask's: part of the polyp "
                     "missing from the mask?")
    elif 0 < ratio <= 1 / 1.5:
        found.append(f"the mask is {1 / ratio:.1f}x the model's polyp area: mask too large?")
    if r["boundary_p95"] > 0.05 and r["dice"] >= 0.5:  # overlapping, but outlines apart
        found.append(f"outlines up to {r['boundary_p95']:.0%} of the image diagonal apart "
                     "(95th percentile)")
    if r["confident_missing"] > 0.2:
        found.append(f"the model is sure {r['confident_missing']:.0%} of the mask is background "
                     "(p < 0.1)")
    if r["confident_extra"] > 0.2:
        found.append(f"the model is sure of polyp outside the mask over "
                     f"{r['confident_extra']:.0%} of the mask's area (p > 0.9)")
    if r["class_mismatch"] > 0.2:
        found.append(f"the model gives {r['class_mismatch']:.0%} of the polyp another class")
    return "; ".join(found)
