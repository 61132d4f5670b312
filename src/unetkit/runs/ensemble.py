"""Ensembles: several trained runs used as one model that averages their probabilities.

An ensemble is a folder holding `ensemble.json`:

    {"members": ["fold-1", "fold-2", "../runs/lite2-352"]}

(paths relative to the folder, or absolute). `unetkit train --folds K` writes one for its K
folds; any runs with the same classes can be listed by hand (other encoders, other seeds).
Wherever a run folder is accepted (evaluate, predict, calibrate, serve, submit, export, the
Python `load_model`), an ensemble folder works the same: `load_model` returns an
`EnsembleModel`, a plain `nn.Module` whose logits are those of the members' mean probability
(sigmoid for binary models, softmax otherwise), so thresholds and argmax act on that mean.

Inputs are normalised as the first member's run says; each member gets them re-normalised as
it was trained, so runs on encoders with other statistics mix correctly. The ensemble's input
size (`data.image_size`) is the first member's as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from unetkit.core.files import read_limited
from unetkit.runs.folder import RunError, read_run_card

ENSEMBLE_FILE = "ensemble.json"  # what makes a folder an ensemble
MAX_ENSEMBLE_BYTES = 1_000_000  # a list of member folders
EPS = 1e-6  # probabilities are kept inside [EPS, 1 - EPS] so that their logits are finite


def member_dirs(folder: str | Path) -> list[Path]:
    """The member run folders an ensemble.json lists, checked to exist."""
    folder = Path(folder)
    path = folder / ENSEMBLE_FILE
    try:
        members = json.loads(read_limited(path, MAX_ENSEMBLE_BYTES, "an ensemble.json",
                                          inside=folder, error=RunError))["members"]
    except FileNotFoundError:
        raise RunError(f"{path}: a link to a file that does not exist; replace it with an "
                       "ensemble.json") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise RunError(f"{path}: expected {{\"members\": [run folders]}} ({exc})") from None
    if not isinstance(members, list) or not members:
        raise RunError(f"{path}: 'members' must be a non-empty list of run folders")
    dirs = [Path(m) if Path(m).is_absolute() else folder / m for m in members]
    missing = [str(d) for d in dirs if not (d / "config.json").exists()]
    if missing:
        raise RunError(f"{path}: these members are not run folders: {', '.join(missing)}")
    return dirs


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).exists()


def ensemble_card(folder: str | Path) -> dict:
    """The first member's model card, naming the members: what config.json is for a run."""
    dirs = member_dirs(folder)
    card = read_run_card(dirs[0])
    classes = card["classes"]
    for d in dirs[1:]:
        if read_run_card(d)["classes"] != classes:
            raise RunError(f"{folder}: member {d} has other classes than {dirs[0]} ({classes})")
    return {**card, "ensemble": [str(d) for d in dirs], "metrics": {}}


class EnsembleModel(nn.Module):
    """Members' mean probability, returned as logits (B, K, H, W) like any unetkit model."""

    def __init__(self, members: list[nn.Module], norms: list[tuple[list, list]]):
        super().__init__()
        self.members = nn.ModuleList(members)
        for i, (mean, std) in enumerate(norms):
            self.register_buffer(f"mean{i}", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer(f"std{i}", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        multiples = [int(getattr(m, "multiple", 1)) for m in members]
        self.multiple = max(multiples)  # powers of two: the largest is a multiple of the rest

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * self.std0 + self.mean0  # back to [0, 1] pixels, then each member's own
        total = None
        for i, member in enumerate(self.members):
            mean, std = getattr(self, f"mean{i}"), getattr(self, f"std{i}")
            logits = member((raw - mean) / std).float()
            probs = torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(1)
            total = probs if total is None else total + probs
        return total / len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.probabilities(x).clamp(EPS, 1 - EPS)
        return torch.logit(probs) if probs.shape[1] == 1 else probs.log()
