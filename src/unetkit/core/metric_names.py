"""The names of unetkit's scores, and the one migration of the old ones.

- `mDice`, `mIoU` (bare): only the polyp literature's values: per image, the mean over 256
  thresholds of the probability map, averaged over images (evaluation.field_metrics).
- `mDice_point`, `mIoU_point` (shown "mDice@point", "mIoU@point"): Dice / IoU of the mask at the
  operating point (threshold and min_area), per image, averaged over images
  (evaluation.metrics).
- `dice`, `iou`: data-set level, from the counts summed over all images.

Before these names, the operating point's per-image means were called `mDice` / `mIoU` in
config.json, metrics.csv (`val_mDice`), evaluate's JSON, folds.json and train.monitor. Files
written then still load: `point_keys` reads those keys under the new names.
"""

from __future__ import annotations

# old name -> new name of the operating point's per-image means
POINT_RENAMES = {"mDice": "mDice_point", "mIoU": "mIoU_point"}


def point_keys(scores: dict, prefix: str = "") -> dict:
    """A copy of `scores` with the old names of the point scores (`prefix` + mDice, e.g.
    "val_mDice") under their new names, per class too. A mapping that already holds a new name
    was written with the new names: its bare mDice is the literature's and is kept."""
    if not isinstance(scores, dict):
        return scores
    out = dict(scores)
    if not any(prefix + new in out for new in POINT_RENAMES.values()):
        for old, new in POINT_RENAMES.items():
            if prefix + old in out:
                out[prefix + new] = out.pop(prefix + old)
    if isinstance(out.get("per_class"), dict):
        out["per_class"] = {k: point_keys(v) for k, v in out["per_class"].items()}
    return out
