"""The table a polyp paper prints: one row per model, one block of the field's columns per test
set, and the mean over the unseen centres (every set but the one the model trained on).

The columns are the papers' (see `field_metrics`): mDice and mIoU averaged over 256 thresholds,
weighted F-measure, S-measure, mean and max E-measure, MAE. Published rows may be added for
context; they are marked as published figures, with their source, never as measured here, and
only beside a set whose scored images are exactly the protocol's test set (the stems shipped in
evaluation/protocols/): a folder merely named like a benchmark, or part of one, gets none.
"""

from __future__ import annotations

import re
from importlib import resources

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


# The protocol's test images of a key of PUBLISHED, as stems (files in evaluation/protocols/):
# Kvasir-SEG: PraNet's 100 test images; CVC-ColonDB: all its 380 frames. The other sets' lists
# do not ship, so their published figures are never shown.
PROTOCOL_FILES = {"kvasir": ("kvasir-pranet-test.txt", "PraNet's 100 Kvasir-SEG test images"),
                  "colondb": ("cvc-colondb-test.txt", "CVC-ColonDB's 380 frames")}


def published_key(name: str) -> str | None:
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    return next((key for token, key in KEYS if token in flat), None)


def protocol_stems(key: str) -> set[str] | None:
    """The stems of a benchmark's test set under the papers' protocol, None when none ships."""
    if key not in PROTOCOL_FILES:
        return None
    text = resources.files("unetkit.evaluation").joinpath(
        "protocols", PROTOCOL_FILES[key][0]).read_text()
    return {line.strip() for line in text.splitlines() if line.strip()}


def published_sets(sets: list[str], scored: dict[str, set[str]]) -> tuple[dict[str, str], list]:
    """({set name: its key in PUBLISHED} for the sets whose scored stems are exactly the
    protocol's test set, [one line per other benchmark-named set: why it gets no rows])."""
    shown, why = {}, []
    for name in sets:
        key = published_key(name)
        if key is None:
            continue
        stems, got = protocol_stems(key), scored.get(name, set())
        if stems is None:
            why.append(f"{name}: no published rows: unetkit ships no list of this benchmark's "
                       "test images to check the scored ones against")
        elif got != stems:
            why.append(f"{name}: no published rows: the {len(got)} images scored are not "
                       f"{PROTOCOL_FILES[key][1]} ({len(got & stems)} of them scored, "
                       f"{len(got - stems)} others)")
        else:
            shown[name] = key
    return shown, why


def paper_table(measured: list[tuple[str, dict[str, dict | None]]], sets: list[str],
                unseen: dict[str, list[str]], published: bool = False,
                scored: dict[str, set[str]] | None = None) -> str:
    """Markdown: `measured` is [(model name, {set name: field columns or None})]; `unseen`
    names, per model, the sets from centres it never trained on (their mean is the last
    block). `published`: the published rows, beside the sets whose `scored` stems ({set name:
    stems}) are the protocol's test set; a line says why the others have none."""
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
        shown, why = published_sets(sets, scored or {})
        keys = [shown.get(s) for s in sets]
        if not shown:
            reason = "; ".join(why) or "no data set here is a benchmark with published figures"
            return "\n".join(lines) + f"\n\nPublished rows not shown: {reason}.\n"
        for model, figures in PUBLISHED.items():
            cells = [f"{model} *"]
            for key in keys:
                pair = figures.get(key) if key else None
                cells += [_fmt(pair[0]), _fmt(pair[1])] if pair else ["–", "–"]
                cells += ["–"] * (len(COLUMNS) - 2)
            cells += ["–"] * len(COLUMNS)  # which sets are unseen differs from ours
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"\\* {SOURCE}."] + [f"Not beside {line}." for line in why]
    return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
    return f"{v:.3f}"
