"""Randomly damaged run folders, predicted on with the real command line in one process.

Run by test_hardening.py in a subprocess whose memory is capped:
    python damage_cases.py RUN_DIR IMAGE WORK_DIR SEED COUNT
Prints one JSON object per case: the damage, the exit code, the message, whether an exception
escaped the command line, and, when it succeeded, whether its mask is the right one.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unetkit import config as config_mod
from unetkit.cli.main import main
from unetkit.inference.predictor import Predictor
from unetkit.runs.loading import load_model

# Fields that change the mask a valid configuration gives; any other field must not.
PREDICTION_FIELDS = {"train.threshold", "data.mean", "data.std", "data.image_size"}


def random_value(rng: random.Random):
    return rng.choice([
        rng.randint(-10, 10), rng.randint(-2**40, 2**40), rng.choice([0, 1, 2, 3, 100000]),
        rng.uniform(-2, 2), rng.choice([float("nan"), float("inf"), -float("inf"), 1e308, 0.0]),
        rng.choice(["", "x", "hf-hub:someone/model", "../../etc", "1e-3"]), None,
        rng.choice([True, False]), [rng.randint(0, 300) for _ in range(rng.randint(0, 4))],
        [rng.uniform(-1, 1) for _ in range(3)], {"a": 1},
    ])


def leaf_keys(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in values.items():
        keys += leaf_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"]
    return keys


def set_key(values: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for p in parents:
        values = values[p]
    values[last] = value


def damage(run: Path, rng: random.Random) -> tuple[str, str | None]:
    """Damage the run folder in place; returns (description, changed config field or None)."""
    card_path, weights = run / "config.json", run / "model.safetensors"
    card = json.loads(card_path.read_text())
    kind = rng.choice(["field", "field", "field", "field", "summary", "truncate-json",
                       "truncate-weights", "flip-byte", "nan-weights", "delete", "benign"])
    if kind == "field":
        key = rng.choice(leaf_keys(card["config"]))
        value = random_value(rng)
        set_key(card["config"], key, value)
        card_path.write_text(json.dumps(card))
        return f"config.{key} = {value!r}", key
    if kind == "summary":
        key = rng.choice(["arch", "in_channels", "out_channels", "classes", "image_size"])
        card[key] = random_value(rng)
        card_path.write_text(json.dumps(card))
        return f"{key} = {card[key]!r}", None
    if kind == "truncate-json":
        text = card_path.read_text()
        card_path.write_text(text[:rng.randint(0, len(text) - 1)])
    elif kind == "truncate-weights":
        data = weights.read_bytes()
        weights.write_bytes(data[:rng.randint(0, len(data) - 1)])
    elif kind == "flip-byte":
        data = bytearray(weights.read_bytes())
        i = rng.randint(0, min(len(data) - 1, 600))  # the length and the JSON header
        data[i] ^= 1 << rng.randint(0, 7)
        weights.write_bytes(bytes(data))
    elif kind == "nan-weights":
        from safetensors.torch import load_file, save_file
        state = load_file(str(weights))
        key = rng.choice(sorted(k for k, v in state.items() if v.is_floating_point()))
        state[key].view(-1)[0] = float("nan")
        save_file(state, str(weights))
    elif kind == "delete":
        rng.choice([card_path, weights]).unlink()
    else:  # reformatted, reordered, other scores: the same model
        card["metrics"] = {"mDice": rng.random()}
        card = dict(reversed(list(card.items())))
        card_path.write_text(json.dumps(card, indent=rng.randint(0, 4)))
    return kind, None


def expected_mask(base: Path, damaged: Path, image: Path, key: str | None) -> np.ndarray:
    """The mask the damaged folder's configuration should give: the original model's weights
    run with that configuration (read back independently of the loading code under test)."""
    model = load_model(base)
    if key is None or key not in PREDICTION_FIELDS:
        cfg = model.unetkit_config
    else:
        cfg = config_mod.from_dict(json.loads((damaged / "config.json").read_text())["config"])
    arr = np.asarray(Image.open(image).convert("RGB"))
    labels = Predictor(model, cfg).predict([arr])[0]
    return labels * 255 if cfg.num_classes == 2 else labels


def main_(base: Path, image: Path, work: Path, seed: int, count: int) -> None:
    rng = random.Random(seed)
    torch.set_num_threads(1)
    for i in range(count):
        folder = work / f"case{i}"
        shutil.copytree(base, folder)
        what, key = damage(folder, rng)
        out = work / f"out{i}"
        err = io.StringIO()
        escaped = None
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = main(["predict", str(folder), str(image), "--out", str(out), "--quiet"])
        except BaseException:  # anything escaping the command line would be a traceback
            rc, escaped = None, traceback.format_exc(limit=3)
        right = None
        if rc == 0:
            got = np.asarray(Image.open(out / f"{image.stem}.png"))
            right = bool(np.array_equal(got, expected_mask(base, folder, image, key)))
        print(json.dumps({"case": i, "damage": what, "rc": rc, "message": err.getvalue(),
                          "escaped": escaped, "right_mask": right}), flush=True)


if __name__ == "__main__":
    main_(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]),
          int(sys.argv[5]))
