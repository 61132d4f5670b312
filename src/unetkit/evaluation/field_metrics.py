"""The polyp literature's metrics on 0-255 grey maps, as PySODMetrics / PraNet's evaluation
compute them: mDice, mIoU, max Dice, weighted F-measure (beta^2 = 1), S-measure (alpha = 0.5),
E-measure (mean, max, adaptive) and MAE.

Per image: the truth is `mask > 128` (or a bool mask); the uint8 map u is normalised by min-max,
p = (u/255 - min)/(max - min), and left as u/255 when the map is constant (the reference's rule,
no epsilon). Threshold t (0..255) predicts floor(p*255) >= t; mDice/mIoU average the 256
thresholds' Dice/IoU, per image and then over images; max Dice and max E are the maximum over
thresholds of the image-averaged curve (per image: of the image's own curve).
Empty truth (no pixel > 128): Dice and IoU are 0 at every threshold (0/0 counts as 0, also
when the map predicts nothing), wF is 0, S is 1 - mean(p), E uses the all-background formula.
A quadrant of the S-measure's region score with no pixel counts 0 (the reference gives NaN).

Everything but the weighted F-measure comes from one histogram of (quadrant, truth, grey level),
so an image costs a few passes; the weighted F-measure needs an exact Euclidean distance
transform with nearest-pixel indices (scipy.ndimage's, as the reference), on the truth's box +
FAR pixels.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

EPS = np.spacing(1)  # MATLAB's eps, as the reference uses
LEVELS = 256
FAR = 100  # pixels: beyond, the weighted F-measure's weight B is 2 (see weighted_fmeasure)
METRICS = ("mDice", "mIoU", "wFm", "Sm", "meanEm", "maxEm", "MAE", "maxDice", "adpEm")


def _plane(a: np.ndarray, what: str) -> np.ndarray:
    """An (H, W) array, from (H, W) or (H, W, 1)."""
    a = np.asarray(a)
    a = a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a
    if a.ndim != 2:
        raise ValueError(f"a {what} must be (H, W), got shape {a.shape}")
    return a


def to_uint8_map(pred: np.ndarray) -> np.ndarray:
    """The field's 0-255 grey map: uint8 as it is, bool as 0/255, uint16 as round(v/257),
    float probabilities in [0, 1] as round(p*255) (halves up)."""
    pred = _plane(pred, "map")
    if pred.dtype == np.uint8:
        return pred
    if pred.dtype == np.bool_:
        return pred.astype(np.uint8) * 255
    if pred.dtype == np.uint16:  # 0..65535 onto 0..255: v*255/65535 = v/257, rounded
        return ((pred.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if np.issubdtype(pred.dtype, np.floating):
        if not np.isfinite(pred).all() or pred.min() < 0 or pred.max() > 1:
            raise ValueError("a float map must hold probabilities in [0, 1] (apply the "
                             "sigmoid first); it has values outside or NaN")
        return np.floor(pred.astype(np.float64) * 255 + 0.5).astype(np.uint8)
    if np.issubdtype(pred.dtype, np.integer) and pred.min() >= 0 and pred.max() <= 255:
        return pred.astype(np.uint8)
    raise ValueError(f"a map of {pred.dtype} values is neither a 0-255 grey map nor "
                     "probabilities in [0, 1]")


def resize_map(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A uint8 map resized to (H, W) as PraNet's test scripts do (torch's bilinear
    interpolate, align_corners=False, no antialiasing) on the 0-1 map, then round(p*255).
    In numpy, so that worker processes need no torch."""
    out = pred.astype(np.float64) / 255
    for axis, size in enumerate(shape):
        n = out.shape[axis]
        src = np.maximum((np.arange(size) + 0.5) * (n / size) - 0.5, 0)
        i0 = np.minimum(src.astype(np.int64), n - 1)
        i1 = np.minimum(i0 + 1, n - 1)
        lam = (src - i0).reshape([-1 if a == axis else 1 for a in range(2)])
        out = out.take(i0, axis) * (1 - lam) + out.take(i1, axis) * lam
    return to_uint8_map(out.clip(0, 1))


def to_truth(mask: np.ndarray) -> np.ndarray:
    """A bool truth mask: bool as it is, else the grey map (see to_uint8_map) > 128. A 0/1
    integer mask (class indices) is refused: as grey values it would be empty."""
    mask = _plane(mask, "mask")
    if mask.dtype == np.bool_:
        return mask
    if np.issubdtype(mask.dtype, np.integer) and mask.max(initial=0) == 1:
        raise ValueError("a 0/1 integer mask reads as grey values 0 and 1 (all background "
                         "at > 128): pass mask.astype(bool), or 0/255")
    return to_uint8_map(mask) > 128


def _normalised_levels(hist: np.ndarray) -> np.ndarray:
    """p for each grey value 0..255, with the reference's exact float operations."""
    present = np.flatnonzero(hist)
    p = np.arange(LEVELS) / 255
    lo, hi = p[present[0]], p[present[-1]]
    return (p - lo) / (hi - lo) if hi != lo else p


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """The reference's SSIM of one quadrant on its pixels (used when the quadrant is constant,
    where the result hangs on exact zeros)."""
    n = pred.size
    x, y = np.mean(pred), np.mean(gt)
    sx = np.sum((pred - x) ** 2) / (n - 1 + EPS)
    sy = np.sum((gt - y) ** 2) / (n - 1 + EPS)
    sxy = np.sum((pred - x) * (gt - y)) / (n - 1 + EPS)
    return _ssim_score(x, y, sx, sy, sxy)


def _ssim_score(x, y, sx, sy, sxy) -> float:
    alpha, beta = 4 * x * y * sxy, (x ** 2 + y ** 2) * (sx + sy)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def _ssim_hist(h: np.ndarray, p: np.ndarray) -> float:
    """SSIM of a quadrant from its (truth, level) histogram h (2, 256) and the level values p."""
    n = h.sum()
    nf = h[1].sum()
    x = (h @ p).sum() / n
    y = nf / n
    d = p - x
    sx = (h.sum(0) @ d ** 2) / (n - 1 + EPS)
    sy = ((n - nf) * y ** 2 + nf * (1 - y) ** 2) / (n - 1 + EPS)
    sxy = ((h[1] @ d) * (1 - y) - (h[0] @ d) * y) / (n - 1 + EPS)
    return _ssim_score(x, y, sx, sy, sxy)


def _s_object(h: np.ndarray, v: np.ndarray) -> float:
    n = h.sum()
    mean = (h @ v) / n
    std = math.sqrt((h @ (v - mean) ** 2) / (n - 1)) if n > 1 else 0.0
    return 2 * mean / (mean ** 2 + 1 + std + EPS)


def s_measure(pred: np.ndarray, gt: np.ndarray, p: np.ndarray, key: np.ndarray, mean: float,
              alpha: float = 0.5) -> float:
    """S-measure of the uint8 map `pred`: `p` its 256 normalised level values, `key` =
    pred + 256*truth, `mean` the mean normalised value."""
    h, w = gt.shape
    nfg = int(np.count_nonzero(gt))
    if nfg == 0:
        return float(1 - mean)
    if nfg == gt.size:
        return float(mean)
    rows, cols = np.count_nonzero(gt, axis=1), np.count_nonzero(gt, axis=0)
    cy = int(np.round((rows @ np.arange(h)) / nfg)) + 1  # centroid, +1 as MATLAB's 1:X
    cx = int(np.round((cols @ np.arange(w)) / nfg)) + 1
    region, quads = 0.0, ((0, cy, 0, cx), (0, cy, cx, w), (cy, h, 0, cx), (cy, h, cx, w))
    total = np.zeros(2 * LEVELS, dtype=np.int64)
    for r0, r1, c0, c1 in quads:
        if r1 <= r0 or c1 <= c0:
            continue
        hq = np.bincount(key[r0:r1, c0:c1].ravel(), minlength=2 * LEVELS)
        total += hq
        if np.count_nonzero(hq) == 1:  # constant quadrant: exact zeros decide, so do as it does
            score = _ssim(p[pred[r0:r1, c0:c1]], gt[r0:r1, c0:c1])
        else:
            score = _ssim_hist(hq.reshape(2, LEVELS), p)
        region += score * (r1 - r0) * (c1 - c0) / gt.size
    y = nfg / gt.size
    obj = (_s_object(total[LEVELS:], p) * y + _s_object(total[:LEVELS], 1 - p) * (1 - y))
    return float(max(0.0, alpha * obj + (1 - alpha) * region))


def e_measure_curve(tp: np.ndarray, fp: np.ndarray, nfg: int, size: int) -> np.ndarray:
    """E-measure for binarisations with these TP/FP counts (any shape), nfg truth pixels."""
    tp, fp = np.asarray(tp, dtype=np.float64), np.asarray(fp, dtype=np.float64)
    pfg = tp + fp
    pbg = size - pfg
    if nfg == 0:
        total = pbg
    elif nfg == size:
        total = pfg
    else:
        fn = nfg - tp
        tn = pbg - fn
        mp, mg = pfg / size, nfg / size
        total = 0
        for count, a, b in ((tp, 1 - mp, 1 - mg), (fp, 1 - mp, -mg),
                            (fn, -mp, 1 - mg), (tn, -mp, -mg)):
            align = 2 * (a * b) / (a ** 2 + b ** 2 + EPS)
            total = total + (align + 1) ** 2 / 4 * count
    return total / (size - 1 + EPS)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(den.shape), where=den != 0)  # 0/0 counts as 0


# B = 2 - 0.5^(d/5) by squared distance d^2 up to FAR^2; beyond, B is within 2^-20 of 2.
_IMPORTANCE = 2 - np.exp(np.log(0.5) / 5 * np.sqrt(np.arange(FAR * FAR + 1)))


def _importance(d2: np.ndarray) -> np.ndarray:
    """B for squared distances; those beyond FAR take B at FAR (both within 2^-20 of B)."""
    return _IMPORTANCE[np.minimum(d2, FAR * FAR)]


def _gauss_kernel(size: int = 7, sigma: float = 5) -> np.ndarray:
    """1-D factor of MATLAB's fspecial('gaussian', size, sigma) (the 2-D kernel is its outer
    product: nothing falls under fspecial's eps cut at sigma 5)."""
    x = np.arange(size) - (size - 1) / 2
    k = np.exp(-x ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def _filter(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """MATLAB's imfilter (zero padding), separable: rows then columns."""
    r, (h, w) = len(k) // 2, img.shape
    pad = np.pad(img, r)
    rows = sum(k[i] * pad[:, i:i + w] for i in range(len(k)))
    return sum(k[i] * rows[i:i + h] for i in range(len(k)))


def nearest_truth(fg: np.ndarray, region: tuple[slice, slice]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d2, rows, cols) for a bool mask with at least one True: every pixel's squared distance
    to the nearest True pixel, and that pixel's row and column for the pixels of `region`. The
    reference's transform (scipy's), so that between equally near pixels it picks the same."""
    rows, cols = ndimage.distance_transform_edt(~fg, return_distances=False, return_indices=True)
    yy, xx = np.indices(fg.shape)
    d2 = (rows - yy) ** 2 + (cols - xx) ** 2  # exact integers, for the weights' lookup table
    return d2, rows[region], cols[region]


def weighted_fmeasure(key: np.ndarray, gt: np.ndarray, err: np.ndarray, err_sum: float,
                      beta2: float = 1.0) -> float:
    """Margolin et al.'s weighted F-measure as the reference's MATLAB port computes it; `err`
    is |p - truth| for each key (grey level + 256*truth), `err_sum` its total over the image.

    Pixels more than FAR pixels from the truth get the weight B = 2 (exactly 2 - 0.5^(d/5),
    less than 2^-20 away), so the distance transform runs on the truth's box + FAR only (and
    the pixels of that box farther than FAR take B at FAR, also within 2^-20)."""
    nfg = int(np.count_nonzero(gt))
    if nfg == 0:
        return 0.0
    h, w = gt.shape
    rows, cols = np.flatnonzero(gt.any(1)), np.flatnonzero(gt.any(0))
    y0, y1 = max(rows[0] - FAR, 0), min(rows[-1] + FAR + 1, h)
    x0, x1 = max(cols[0] - FAR, 0), min(cols[-1] + FAR + 1, w)
    # EA (the blurred error) is only used on truth pixels: filter the truth's box + 3 pixels.
    r0, r1 = max(rows[0] - 3, 0) - y0, min(rows[-1] + 4, h) - y0
    c0, c1 = max(cols[0] - 3, 0) - x0, min(cols[-1] + 4, w) - x0
    box = (slice(r0, r1), slice(c0, c1))
    d2, near_r, near_c = nearest_truth(gt[y0:y1, x0:x1], box)
    err_c = err[key[y0:y1, x0:x1]]
    truth = gt[y0:y1, x0:x1][box]
    et = np.where(truth, err_c[box], err_c[near_r, near_c])  # edges: their own error
    # Windows of truth pixels stay inside the box or leave the image (zeros, as the reference).
    ea = _filter(et, _gauss_kernel())
    e_in = err_c[box][truth]
    ew_in = np.minimum(ea[truth], e_in)
    # B = 1 on the truth (d = 0), 2 - 0.5^(d/5) around it, 2 beyond the crop.
    inside = float(np.sum(err_c * _importance(d2)))
    fp_w = inside - e_in.sum() + 2 * (err_sum - err_c.sum())
    tp_w = nfg - ew_in.sum()
    recall = 1 - ew_in.mean()
    precision = tp_w / (tp_w + fp_w + EPS)
    return float((1 + beta2) * recall * precision / (recall + beta2 * precision + EPS))


def image_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[dict, dict]:
    """(scores, curves) of one uint8 map against a bool truth of the same shape; curves are
    Dice, IoU and E-measure at thresholds 0..255 (level >= t)."""
    size, nfg = gt.size, int(np.count_nonzero(gt))
    key = pred.astype(np.intp)
    key[gt] += LEVELS
    hist = np.bincount(key.ravel(), minlength=2 * LEVELS).reshape(2, LEVELS)
    p = _normalised_levels(hist.sum(0))
    # Thresholds act on floor(p*255) (the reference's uint8 cast), counted from the histogram.
    level = (p * 255).astype(np.uint8)
    by_level = np.stack([np.bincount(level, weights=hist[i], minlength=LEVELS) for i in (0, 1)])
    fp, tp = (np.cumsum(by_level[:, ::-1], axis=1)[:, ::-1])  # pixels with level >= t
    fn = nfg - tp
    dice = _divide(2 * tp, 2 * tp + fp + fn)
    iou = _divide(tp, tp + fp + fn)
    em = e_measure_curve(tp, fp, nfg, size)
    mean = float(hist.sum(0) @ p) / size
    above = p >= min(2 * mean, 1)  # the adaptive threshold
    adp = float(e_measure_curve(hist[1][above].sum(), hist[0][above].sum(), nfg, size))
    err = np.concatenate([p, 1 - p])  # |p - truth| by key
    err_sum = float(hist.ravel() @ err)
    scores = {"mDice": float(dice.mean()), "mIoU": float(iou.mean()),
              "wFm": weighted_fmeasure(key, gt, err, err_sum),
              "Sm": s_measure(pred, gt, p, key, mean), "meanEm": float(em.mean()),
              "maxEm": float(em.max()), "MAE": err_sum / size, "maxDice": float(dice.max()),
              "adpEm": adp}
    return scores, {"dice": dice, "iou": iou, "em": em}


def score_pair(pred: np.ndarray, mask: np.ndarray) -> tuple[dict, dict]:
    """`image_scores` for any accepted map and mask (see FieldMetrics.add), the scores with
    "resized" and "empty_truth" flags."""
    gt, pred = to_truth(mask), to_uint8_map(pred)
    resized = pred.shape != gt.shape
    if resized:
        pred = resize_map(pred, gt.shape)
    scores, curves = image_scores(pred, gt)
    return dict(scores, resized=resized, empty_truth=not gt.any()), curves


class FieldMetrics:
    """Streaming accumulator: `add` one map and mask at a time (per-image scores back), then
    `results` for the data set. Memory: three 256-value curves and a few sums."""

    def __init__(self):
        self.count = 0
        self.resized = 0
        self.empty_truth = 0
        self._sums = dict.fromkeys(METRICS, 0.0)
        self._curves = {name: np.zeros(LEVELS) for name in ("dice", "iou", "em")}

    def add(self, pred: np.ndarray, mask: np.ndarray) -> dict:
        """Score one map: uint8/uint16/bool grey map or float probabilities in [0, 1] (made the
        field's uint8 map first); mask bool or grey (> 128). A map of another size than the mask
        is resized to the mask's (see resize_map) and counted."""
        return self.record(*score_pair(pred, mask))

    def record(self, scores: dict, curves: dict) -> dict:
        """Add one image's `score_pair` result (computed elsewhere, e.g. in a worker)."""
        self.count += 1
        self.resized += scores["resized"]
        self.empty_truth += scores["empty_truth"]
        for name in METRICS:
            self._sums[name] += scores[name]
        for name, curve in curves.items():
            self._curves[name] += curve
        return scores

    def results(self) -> dict:
        """Data-set scores: per-image scores averaged; maxDice and maxEm are the maximum over
        thresholds of the averaged curves (as the reference reports them); curves included."""
        if not self.count:
            raise ValueError("no image was added: nothing to average")
        out = {name: self._sums[name] / self.count for name in METRICS}
        curves = {name: c / self.count for name, c in self._curves.items()}
        out["maxDice"] = float(curves["dice"].max())
        out["maxEm"] = float(curves["em"].max())
        out.update(images=self.count, resized=self.resized, empty_truth=self.empty_truth,
                   curves={name: c.tolist() for name, c in curves.items()})
        return out
