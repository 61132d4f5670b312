"""Training checkpoints that survive a crash at any moment.

    RUN_DIR/checkpoints/last.pt      the state after the latest finished epoch
    RUN_DIR/checkpoints/previous.pt  the one before it: the fallback when last.pt is damaged

A save writes the new state in full to a temporary file first, then renames last.pt to
previous.pt and the temporary file to last.pt. Each rename is atomic, so after a crash (or a full
disk) there is always at least one complete checkpoint: last.pt, or previous.pt alone when the
crash fell between the two renames. A finished run keeps last.pt alone (`keep_last_only`).

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
`torch.load(weights_only=True)`, which refuses to unpickle anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from unetkit.core.files import temp_beside
from unetkit.runs.folder import RunError

LAST, PREVIOUS = "last.pt", "previous.pt"


def save_checkpoint(folder: str | Path, state: dict) -> Path:
    """Write `state` as folder/last.pt, keeping the former last.pt as folder/previous.pt."""
    folder = Path(folder)
    last = folder / LAST
    with temp_beside(last) as (f, tmp):
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())  # the bytes are on disk before any rename makes them count
        f.close()
        if last.exists():
            os.replace(last, folder / PREVIOUS)
        os.replace(tmp, last)
    return last


def keep_last_only(folder: str | Path) -> None:
    """Once a run has finished: delete previous.pt if last.pt reads back whole. previous.pt is
    the fallback for a save cut short, a second full copy of the training state (weights and
    the optimiser's moments: three times the weights with Adam) that a finished run no longer
    needs; last.pt is what `--resume` with more epochs continues from."""
    folder = Path(folder)
    if not (folder / PREVIOUS).exists():
        return
    try:
        read_checkpoint(folder / LAST)
    except RunError:
        return  # the fallback stays
    (folder / PREVIOUS).unlink()


def read_checkpoint(path: str | Path) -> dict:
    """One checkpoint file, loaded safely, or a RunError naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{path}: no checkpoint") from None
    except Exception as exc:  # truncated zip, bit rot, a pickle with arbitrary objects in it
        raise RunError(f"{path}: damaged or unsafe checkpoint ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict) or not {"model", "epoch"} <= set(state):
        raise RunError(f"{path}: not a unetkit training checkpoint")
    return state


def has_checkpoint(folder: str | Path) -> bool:
    """Whether a run got as far as its first checkpoint (damaged or not)."""
    return any((Path(folder) / name).exists() for name in (LAST, PREVIOUS))


def load_latest(folder: str | Path, log=print, fits=None) -> tuple[dict, Path]:
    """The newest usable checkpoint in `folder`: last.pt, else previous.pt (with a note why).

    `fits(state, path)` may raise RunError saying how a checkpoint differs from the run's
    configuration; such a checkpoint is passed over like a damaged one."""
    folder = Path(folder)
    errors = []
    for name in (LAST, PREVIOUS):
        try:
            state = read_checkpoint(folder / name)
            if fits is not None:
                fits(state, folder / name)
        except RunError as exc:
            errors.append(str(exc))
            continue
        if errors:
            log(f"{errors[0]}; resuming from {folder / name} instead (epoch {state['epoch']})")
        return state, folder / name
    raise RunError("nothing to resume from: " + "; ".join(errors) + ". Start a new run, or "
                   "restore a checkpoint file")


def rng_state(generators: dict[str, torch.Generator], cuda: bool) -> dict:
    """Every random state a run draws from (its own generators, torch's, CUDA's, Python's,
    NumPy's) as tensors and numbers, so that a resumed run draws exactly what it would have."""
    import random

    import numpy as np

    np_state = np.random.get_state()
    return {**{name: g.get_state() for name, g in generators.items()},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if cuda else [],
            "python": list(random.getstate()[1]),
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2])}


def set_rng_state(rng: dict, generators: dict[str, torch.Generator], cuda: bool) -> None:
    """Undo of `rng_state`."""
    import random

    import numpy as np

    for name, g in generators.items():
        g.set_state(rng[name])
    torch.set_rng_state(rng["torch"])
    if cuda and rng["cuda"]:
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate((3, tuple(rng["python"]), None))
    state = rng["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", state, rng["numpy_pos"], 0, 0.0))
