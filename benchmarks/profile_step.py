"""Where a CPU training step's time goes, measured through the real Trainer.

Each recipe trains a few epochs with `Trainer.fit` on one thread. The Trainer's own parts are
wrapped with timers, so the loop that runs is unetkit's loop, unchanged:

  gather+normalise   Trainer.batch without the augmentation (uint8 -> float, normalise)
  augmentation       BatchAugment (the recipe's ops)
  multi-scale        the multi-scale resize of the batch (Tricks.batch)
  forward            the model's forward (timed with forward hooks)
  main loss          the loss on the output
  side heads loss    the deep-supervision heads and their losses (Tricks.loss)
  backward           loss.backward() (the side heads' backward included)
  grad clip          Tricks.before_update
  optimiser          optimizer.step (timed with the optimiser's step hooks)
  EMA                Tricks.after_update
  rest of the loop   what train_epoch spends outside those (zero_grad, schedule, NaN guard)

and per epoch: validation (Trainer.validate) and the checkpoint, metrics and best-weights writes
(Trainer.save). Times are exclusive (a part nested in another is not counted twice).

The first epoch is warm-up and not reported. Shares are per epoch, then the median over the
timed epochs: on a loaded machine every part of a step is slowed alike, so shares move much
less than seconds do (their spread over the epochs is shown).

    python benchmarks/profile_step.py                       # kvasir-binary and polyp-pranet-cpu
    python benchmarks/profile_step.py --recipe demo --size 64 --epochs 2 --json profile.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's unetkit

from unetkit import config as config_mod  # noqa: E402
from unetkit.core.files import write_text  # noqa: E402
from unetkit.runs.folder import unwrap  # noqa: E402
from unetkit.training.trainer import Trainer  # noqa: E402

STEP_PARTS = ("gather+normalise", "augmentation", "multi-scale", "forward", "main loss",
              "side heads loss", "backward", "grad clip", "optimiser", "EMA", "rest of the loop")
EPOCH_PARTS = ("validation", "checkpoint write")


class Timer:
    """Exclusive seconds per named region; regions nest (a stack), and only count while
    `active` (the training part of an epoch: validation runs the same model and batches)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.stack: list[list] = []  # [name, start, seconds spent in children]
        self.active = False

    def start(self, name: str) -> None:
        self.stack.append([name, time.perf_counter(), 0.0])

    def stop(self) -> None:
        name, start, children = self.stack.pop()
        spent = time.perf_counter() - start
        self.seconds[name] = self.seconds.get(name, 0.0) + spent - children
        if self.stack:
            self.stack[-1][2] += spent

    @contextlib.contextmanager
    def region(self, name: str, always: bool = False):
        if not (self.active or always):
            yield
            return
        self.start(name)
        try:
            yield
        finally:
            self.stop()

    def wrap(self, name: str, fn, always: bool = False):
        def timed(*args, **kwargs):
            with self.region(name, always):
                return fn(*args, **kwargs)
        return timed


class TimedAugment:
    """BatchAugment, timed; truthiness and attributes (its generator) as the original."""

    def __init__(self, augment, timer: Timer):
        self._augment, self._timer = augment, timer

    def __bool__(self) -> bool:
        return bool(self._augment)

    def __call__(self, images, masks):
        with self._timer.region("augmentation"):
            return self._augment(images, masks)

    def __getattr__(self, name):
        return getattr(self._augment, name)


def instrument(trainer: Trainer, timer: Timer) -> None:
    """Timers around the Trainer's parts (instance attributes; the classes are untouched)."""
    trainer.batch = timer.wrap("gather+normalise", trainer.batch)
    trainer.augment = TimedAugment(trainer.augment, timer)
    tricks = trainer.tricks
    tricks.batch = timer.wrap("multi-scale", tricks.batch)
    tricks.loss = timer.wrap("side heads loss", tricks.loss)
    tricks.before_update = timer.wrap("grad clip", tricks.before_update)
    tricks.after_update = timer.wrap("EMA", tricks.after_update)
    trainer.loss_fn = timer.wrap("main loss", trainer.loss_fn)  # inside Tricks.loss: nested
    # Hooks must return None (anything else replaces the module's input or output).
    def starter(name):
        def hook(*_):
            if timer.active:
                timer.start(name)
        return hook

    def stopper(*_):
        if timer.active:
            timer.stop()

    net = unwrap(trainer.model)
    net.register_forward_pre_hook(starter("forward"))
    net.register_forward_hook(stopper)
    trainer.optimizer.register_step_pre_hook(starter("optimiser"))
    trainer.optimizer.register_step_post_hook(stopper)
    epoch = trainer.train_epoch

    def train_epoch():
        timer.active = True
        try:
            with timer.region("rest of the loop"):
                return epoch()
        finally:
            timer.active = False

    trainer.train_epoch = train_epoch
    trainer.validate = timer.wrap("validation", trainer.validate, always=True)
    trainer.save = timer.wrap("checkpoint write", trainer.save, always=True)
    trainer.finish = lambda: None  # curves.png and panels come after training, not in it


@contextlib.contextmanager
def timed_backward(timer: Timer):
    """loss.backward(), timed: Tensor.backward patched for the duration of the run."""
    original = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        with timer.region("backward"):
            return original(self, *args, **kwargs)

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = original


def make_config(recipe: str, data: Path, args, synthetic: bool):
    sets = [f"data.image_size=[{args.size}, {args.size}]", "train.device='cpu'",
            f"train.epochs={args.epochs}", "train.samples=0", "train.loggers=[]",
            "train.compile=False", *args.set]
    if synthetic:  # a seeded split of the synthetic set instead of the recipe's split files
        sets += ["data.split.train=None", "data.split.val=None", "data.split.val_fraction=0.2"]
    cfg = config_mod.load(recipe, data_root=str(data), overrides=sets)
    if cfg.model.encoder_weights:  # the same network, random weights: nothing to download
        cfg.model.encoder_weights = None
    if args.batch:
        cfg.train.batch_size = args.batch
    config_mod.validate(cfg)
    return cfg


def profile(recipe: str, data: Path, args, synthetic: bool, tmp: Path) -> dict:
    cfg = make_config(recipe, data, args, synthetic)
    trainer = Trainer(cfg, tmp / f"run-{recipe}", progress=False, log=lambda m: None)
    (tmp / f"run-{recipe}").mkdir(parents=True, exist_ok=True)
    timer, epochs = Timer(), []
    instrument(trainer, timer)
    fit_epoch = trainer.train_epoch

    def train_epoch():  # a snapshot of the timers at each epoch's start
        epochs.append(dict(timer.seconds))
        return fit_epoch()

    trainer.train_epoch = train_epoch
    with timed_backward(timer):
        tic = time.perf_counter()
        trainer.fit()
        wall = time.perf_counter() - tic
    epochs.append(dict(timer.seconds))
    per_epoch = [{k: after.get(k, 0.0) - before.get(k, 0.0) for k in (*STEP_PARTS, *EPOCH_PARTS)}
                 for before, after in zip(epochs, epochs[1:], strict=False)]
    timed = per_epoch[1:] or per_epoch  # the first epoch is warm-up
    steps = trainer.steps_per_epoch
    step_s = [sum(e[k] for k in STEP_PARTS) / steps for e in timed]
    parts = {}
    for k in STEP_PARTS:
        shares = [100 * e[k] / steps / s for e, s in zip(timed, step_s, strict=True)]
        parts[k] = {"share": statistics.median(shares), "low": min(shares), "high": max(shares),
                    "ms": 1000 * statistics.median(e[k] / steps for e in timed)}
    train_epoch_s = [s * steps for s in step_s]
    for k in EPOCH_PARTS:  # per epoch, as a share of the epoch (training + validation + writes)
        shares = [100 * e[k] / (t + e["validation"] + e["checkpoint write"])
                  for e, t in zip(timed, train_epoch_s, strict=True)]
        parts[k] = {"share_of_epoch": statistics.median(shares), "low": min(shares),
                    "high": max(shares), "s": statistics.median(e[k] for e in timed)}
    net = unwrap(trainer.model)
    encoder = f" {cfg.model.encoder}" if cfg.model.arch == "timm-unet" else ""
    return {"recipe": recipe, "model": cfg.model.arch + encoder,
            "params": sum(p.numel() for p in net.parameters()), "size": args.size,
            "batch": trainer.batch_size, "steps_per_epoch": steps,
            "train_images": len(trainer.train_data), "val_images": len(trainer.val_data),
            "epochs": args.epochs, "timed_epochs": len(timed), "wall_s": round(wall, 1),
            "step_ms": 1000 * statistics.median(step_s), "parts": parts}


def table(results: list[dict]) -> str:
    head = "| part | " + " | ".join(f"{r['recipe']} ({r['model']}, {r['size']} px, "
                                    f"batch {r['batch']})" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for k in STEP_PARTS:
        cells = []
        for r in results:
            p = r["parts"][k]
            cells.append("-" if p["ms"] < 0.05 else
                         f"{p['share']:.1f} % ({p['low']:.1f}-{p['high']:.1f}), {p['ms']:.0f} ms")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| **one step** | " + " | ".join(f"100 %, {r['step_ms']:.0f} ms"
                                                   for r in results) + " |")
    for k in EPOCH_PARTS:
        lines.append(f"| {k}, per epoch (share of the epoch) | " + " | ".join(
            f"{r['parts'][k]['share_of_epoch']:.1f} % ({r['parts'][k]['low']:.1f}-"
            f"{r['parts'][k]['high']:.1f}), {r['parts'][k]['s']:.2f} s" for r in results) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", action="append",
                   help="a recipe to profile (repeatable; default kvasir-binary and "
                        "polyp-pranet-cpu)")
    p.add_argument("--data", help="a Kvasir-SEG-layout folder (default: a synthetic set)")
    p.add_argument("--images", type=int, default=80, help="synthetic images (default 80)")
    p.add_argument("--size", type=int, default=96, help="image side (default 96)")
    p.add_argument("--batch", type=int, help="batch size (default: the recipe's)")
    p.add_argument("--epochs", type=int, default=3, help="epochs, the first untimed (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--set", action="append", default=[],
                   help="a configuration override, KEY=VALUE (repeatable)")
    p.add_argument("--json", help="write the results to this JSON file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="unetkit-profile-"))
    synthetic = args.data is None
    data = Path(args.data) if args.data else None
    if synthetic:
        from unetkit.data.synthetic import write_dataset

        data = write_dataset(tmp / "synthetic", count=args.images, size=args.size, seed=0)
    results = []
    for recipe in args.recipe or ["kvasir-binary", "polyp-pranet-cpu"]:
        print(f"[{recipe}]", flush=True)
        results.append(profile(recipe, data, args, synthetic, tmp))
        print(f"  {results[-1]['wall_s']} s, step {results[-1]['step_ms']:.0f} ms", flush=True)
    info = {"command": "python " + " ".join(sys.argv), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg(), "data": "synthetic" if synthetic else str(data)}
    print(json.dumps(info))
    print(table(results))
    if args.json:
        write_text(args.json, json.dumps({**info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
