"""The table a polyp paper prints: one row per model, one block of the field's columns per test
set, and the mean over the unseen centres (every set but the one the model trained on).

The columns are the papers' (see `field_metrics`): mDice and mIoU averaged over 256 thresholds,
weighted F-measure, S-measure, mean and max E-measure, MAE. Published rows may be added for
context; they are marked as published figures, with their source, never as measured here.
"""

from __future__ import annotations

import re

COLUMNS = (("mDice", "mDice"), ("mIoU", "mIoU"), ("wFm", "wFβ"), ("Sm", "Sα"),
           ("meanEm", "mEφ"), ("maxEm", "maxEφ"), ("MAE", "MAE"))

# mDice, mIoU under the PraNet protocol (trained on Kvasir-SEG 900 + CVC-ClinicDB 550; Kvasir
# tested on PraNet's 100), as collected in Table V of Wu et al., "Colorectal Polyp Segmentation
# in the Deep Learning Era: A Comprehensive Survey" (arXiv:2401.11734, 2024). Original papers:
# U-Net (Ronneberger et al., MICCAI 2015), PraNet (Fan et al., MICCAI 2020), HarDNet-MSEG
# (Huang et al., arXiv:2101.07172, 2021), Polyp-PVT (Dong et al., CAAI AIR 2023).
PUBLISHED = {
    "U-Net": {"kvasir": (0.818, 0.746), "clinicdb": (0.823, 0.755), "colondb": (0.512, 0.444),
              "etis": (0.398, 0.335), "cvc300": (0.710, 0.627)},
    "PraNet": {"kvasir": (0.898, 0.840), "clinicdb": (0.899, 0.849), "colondb": (0.709, 0.640),
               "etis": (0.628, 0.567), "cvc300": (0.871, 0.797)},
    "HarDNet-MSEG": {"kvasir": (0.897, 0.839), "clinicdb": (0.909, 0.864),
                     "colondb": (0.735, 0.666), "etis": (0.700, 0.630),
                     "cvc300": (0.874, 0.804)},
    "Polyp-PVT": {"kvasir": (0.917, 0.864), "clinicdb": (0.937, 0.889), "colondb": (0.808, 0.727),
                  "etis": (0.787, 0.706), "cvc300": (0.900, 0.833)},
}
SOURCE = ("published figures, not measured here: mDice and mIoU under the PraNet protocol, from "
          "Table V of Wu et al., Colorectal Polyp Segmentation in the Deep Learning Era: A "
          "Comprehensive Survey, arXiv:2401.11734 (2024); their Kvasir-SEG is PraNet's 100 test "
          "images, and they trained on CVC-ClinicDB's 550 images too")
# A data set's name -> its key in PUBLISHED (folder names as the data sets ship them).
KEYS = (("kvasir", "kvasir"), ("clinicdb", "clinicdb"), ("cvc612", "clinicdb"),
        ("colondb", "colondb"), ("etis", "etis"), ("cvc300", "cvc300"),
        ("endoscene", "cvc300"))


def published_key(name: str) -> str | None:
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    return next((key for token, key in KEYS if token in flat), None)


def paper_table(measured: list[tuple[str, dict[str, dict | None]]], sets: list[str],
                unseen: dict[str, list[str]], published: bool = False) -> str:
    """Markdown: `measured` is [(model name, {set name: field columns or None})]; `unseen`
    names, per model, the sets from centres it never trained on (their mean is the last
    block)."""
    head = ["model"] + [f"{s} {title}" for s in sets for _, title in COLUMNS]
    head += [f"unseen mean {title}" for _, title in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, scores in measured:
        cells = [model]
        for s in sets:
            cols = scores.get(s)
            cells += [_fmt(cols[k]) if cols else "n/a" for k, _ in COLUMNS]
        others = [scores[s] for s in unseen.get(model, []) if scores.get(s)]
        cells += [_fmt(sum(c[k] for c in others) / len(others)) if others else "n/a"
                  for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    if published:
        keys = [published_key(s) for s in sets]
        for model, figures in PUBLISHED.items():
            cells = [f"{model} *"]
            for key in keys:
                pair = figures.get(key) if key else None
                cells += [_fmt(pair[0]), _fmt(pair[1])] if pair else ["–", "–"]
                cells += ["–"] * (len(COLUMNS) - 2)
            cells += ["–"] * len(COLUMNS)  # which sets are unseen differs from ours
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"\\* {SOURCE}."]
    return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
    return f"{v:.3f}"
