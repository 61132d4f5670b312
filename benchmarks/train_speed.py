"""Training and inference speed: unetkit against the write-ups' pipeline and
segmentation_models_pytorch.

One process, one device, the same data (Kvasir-SEG's Medico 2020 training split, or a synthetic
set in the same layout when the folder is missing). Parts, each skippable with --skip:

  writeups   the write-ups' pipeline: a torch Dataset that opens each full-size JPEG with PIL and
             resizes it per sample, every epoch; float32, batch 8; DataLoader with 0 and N workers;
             the classic U-Net.
  unetkit    unetkit's pipeline through the real Trainer: arrays decoded once and kept on the
             device, batch augmentation on the device, bf16 autocast + channels_last (CUDA), fused
             AdamW, a large batch; eager and torch.compile'd. Classic U-Net.
  plain      unetkit's step (the Trainer's epoch) over a plain PyTorch loop's (the same model, size,
             batch and device; AdamW, BCE + Dice; no augmentation in either), alternated several
             times in one run: a ratio (over 1: unetkit is slower).
  timm       the same for unetkit's TimmUNet on a resnet34 encoder.
  smp        segmentation_models_pytorch's Unet(resnet34) in the same Trainer (when installed).
  augment    the input pipeline alone (gather, augment, normalise) in images/s, beside training's,
             and (CUDA) the host synchronisations per training step.
  inference  inference images/s (bf16, channels_last, large batch) for the classic and the
             resnet34 U-Nets.
  e2e        the `kvasir-binary` recipe end to end: 20 epochs of Trainer.fit (validation and
             checkpoints included), as shipped (batch 8) and fast (batch 128, compiled); wall time
             from the first epoch to the last, start-up (decoding, model building) excluded.

Rates are images per second over timed regions that follow warm-up steps (which also hold the
compiling), between torch.cuda.synchronize() calls. TFLOP/s counts the convolutions and matrix
products that torch.utils.flop_counter.FlopCounterMode sees in one image's forward (inference) or
forward + backward (training); the share is of the device's dense bf16 peak (--peak-tflops, or
a table of known GPUs), also for the float32 rows, to put every row on one scale.

    python benchmarks/train_speed.py --data ../shared/data/kvasir-seg --json results.json
    python benchmarks/train_speed.py --quick          # CPU, tiny images, under a minute
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's unetkit

from unetkit import config as config_mod  # noqa: E402
from unetkit.core.files import write_text  # noqa: E402
from unetkit.data.arrays import prepare_data  # noqa: E402
from unetkit.data.folders import pair_items  # noqa: E402
from unetkit.data.preprocess import Preprocess, resolve_normalisation  # noqa: E402
from unetkit.data.splits import split_items  # noqa: E402
from unetkit.evaluation.metrics import logits_to_labels  # noqa: E402
from unetkit.models.unet import build_model  # noqa: E402
from unetkit.runs.folder import unwrap  # noqa: E402
from unetkit.training.losses import SegmentationLoss  # noqa: E402
from unetkit.training.trainer import Trainer  # noqa: E402

PARTS = ("writeups", "unetkit", "plain", "timm", "smp", "augment", "inference", "e2e")

# The standard augmentation set (flips, 90-degree turns, affine, colour), on the device.
STANDARD_AUGMENT = [
    {"op": "hflip", "p": 0.5}, {"op": "vflip", "p": 0.5}, {"op": "rot90", "p": 0.5},
    {"op": "affine", "p": 0.5}, {"op": "brightness_contrast", "p": 0.5},
    {"op": "gamma", "p": 0.3},
]

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s.
KNOWN_PEAKS = [("H100 PCIe", 756.0, "H100 PCIe"), ("H100 NVL", 835.0, "H100 NVL"),
               ("H100", 989.4, "H100 SXM"), ("H200", 989.4, "H200"), ("GH200", 989.4, "GH200"),
               ("A100", 312.0, "A100"), ("L40S", 362.0, "L40S"), ("A10G", 70.0, "A10G")]


# ---------------------------------------------------------------------------------------------
# Small helpers.


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_peak(device: torch.device, given: float | None) -> tuple[float | None, str]:
    if given:
        return given, f"{given:g} TFLOP/s (given with --peak-tflops)"
    if device.type != "cuda":
        return None, "no peak assumed on the CPU (give --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, peak, label in KNOWN_PEAKS:
        if key in name:
            return peak, f"{peak:g} TFLOP/s dense bf16 ({label} data sheet; device '{name}')"
    return None, f"unknown device '{name}': give --peak-tflops"


def flops_per_image(make_model, size: int, channels: int, train: bool) -> float | None:
    """Forward (+ backward) FLOPs of one image, counted on the meta device (no memory, no time);
    on the CPU when a model cannot be built there."""
    from torch.utils.flop_counter import FlopCounterMode

    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = make_model()
                x = torch.randn(1, channels, size, size)
            model.train(train)
            counter = FlopCounterMode(display=False)
            with counter:
                if train:
                    model(x).float().sum().backward()
                else:
                    with torch.no_grad():
                        model(x)
            return float(counter.get_total_flops())
        except Exception:  # noqa: BLE001 - try the next device
            continue
    return None


class Bench:
    """Collects result rows, prints them, and rewrites the JSON file after every part (so a run
    cut short still leaves what it measured)."""

    def __init__(self, args, device):
        self.args, self.device, self.rows, self.errors = args, device, [], []
        self.peak, self.peak_note = device_peak(device, args.peak_tflops)
        self.info = environment(device, self.peak_note)
        self.started = time.perf_counter()

    def add(self, part, name, img_s, flops=None, **extra) -> dict:
        row = {"part": part, "name": name, "img_s": round(img_s, 2)}
        if flops:
            row["gflop_per_img"] = round(flops / 1e9, 2)
            row["tflop_s"] = round(img_s * flops / 1e12, 2)
            if self.peak:
                row["peak_share"] = round(img_s * flops / 1e12 / self.peak, 4)
        row.update(extra)
        self.rows.append(row)
        share = f"  {100 * row['peak_share']:.1f}% of peak" if "peak_share" in row else ""
        tflops = f"  {row['tflop_s']:.1f} TFLOP/s" if "tflop_s" in row else ""
        print(f"  {part:9s} {name:44s} {img_s:9.1f} img/s{tflops}{share}", flush=True)
        self.save()
        return row

    def note(self, part, name, **values) -> None:
        self.rows.append({"part": part, "name": name, **values})
        print(f"  {part:9s} {name:44s} " + "  ".join(f"{k} {v}" for k, v in values.items()),
              flush=True)
        self.save()

    def save(self) -> None:
        if not self.args.json:
            return
        out = {**self.info, "rows": self.rows, "errors": self.errors,
               "elapsed_s": round(time.perf_counter() - self.started, 1)}
        text = json.dumps(out, indent=2)
        write_text(self.args.json, text)

    def run(self, part, fn, *a) -> None:
        if part in self.args.skip:
            print(f"[{part}] skipped", flush=True)
            return
        print(f"[{part}]", flush=True)
        tic = time.perf_counter()
        try:
            fn(self, *a)
        except Exception as exc:  # one part failing must not lose the others' numbers
            traceback.print_exc()
            self.errors.append({"part": part, "error": f"{type(exc).__name__}: {exc}"})
            self.save()
        finally:
            free_memory()
            try:
                torch._dynamo.reset()
            except Exception:  # noqa: BLE001
                pass
        print(f"[{part}] {time.perf_counter() - tic:.1f}s", flush=True)

    def table(self) -> str:
        lines = ["| part | run | img/s | TFLOP/s | % of bf16 peak | notes |",
                 "|---|---|---|---|---|---|"]
        for r in self.rows:
            if "img_s" not in r:
                extra = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("part", "name"))
                lines.append(f"| {r['part']} | {r['name']} | | | | {extra} |")
                continue
            share = f"{100 * r['peak_share']:.1f}" if "peak_share" in r else ""
            notes = ", ".join(f"{k} {v}" for k, v in r.items()
                              if k not in ("part", "name", "img_s", "tflop_s", "peak_share"))
            lines.append(f"| {r['part']} | {r['name']} | {r['img_s']:.1f} | "
                         f"{r.get('tflop_s', '')} | {share} | {notes} |")
        return "\n".join(lines)


def environment(device: torch.device, peak_note: str) -> dict:
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python " + " ".join(sys.argv),
        "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "device": str(device), "peak": peak_note,
    }
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    for module in ("timm", "PIL", "segmentation_models_pytorch"):
        try:
            info[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001
            info[module] = None
    return info


# ---------------------------------------------------------------------------------------------
# The data, and the configurations every part shares.


class Context:
    def __init__(self, args, device: torch.device):
        self.args, self.device = args, device
        self.tmp = Path(tempfile.mkdtemp(prefix="unetkit-bench-"))
        self.cache = self.tmp / "cache"  # the decoded arrays, written once, memory-mapped after
        root = Path(args.data)
        self.synthetic = not (root / "images").is_dir()
        if self.synthetic:
            from unetkit.data.synthetic import write_dataset

            count, size = (24, 96) if args.quick else (400, 384)
            root = write_dataset(self.tmp / "synthetic", count=count, size=size, seed=0)
            print(f"no data folder at {args.data}: using {count} synthetic {size}x{size} images")
        self.root = root
        self.split_sets = self.split_overrides()

    def split_overrides(self) -> list[str]:
        """The Medico 2020 split (a 16/8 subset with --quick); a seeded random one on synthetic
        data."""
        if self.synthetic:
            return ["data.split.train=None", "data.split.val=None", "data.split.val_fraction=0.25"]
        if not self.args.quick:
            return []
        cfg = config_mod.load("kvasir-binary", data_root=str(self.root))
        items, _ = pair_items(self.root, cfg.data)
        splits = split_items(items, self.root, cfg.data.split)
        sets = []
        for name, n in (("train", 16), ("val", 8)):
            path = self.tmp / f"{name}.txt"
            path.write_text("\n".join(it.name for it in splits[name][:n]) + "\n")
            sets.append(f"data.split.{name}={str(path)!r}")
        return sets

    def config(self, arch="unet", batch=None, compile_=False, epochs=20, augment=True,
               sets: list[str] = ()):
        """The kvasir-binary recipe at --size on --device, with the run's changes."""
        a = self.args
        model_sets = {"unet": ["model.arch='unet'"] + (
                          ["model.base_channels=16", "model.depth=3"] if a.small else []),
                      "timm-unet": ["model.arch='timm-unet'", "model.encoder='resnet34'"]}[arch]
        cfg = config_mod.load("kvasir-binary", data_root=str(self.root), overrides=[
            *self.split_sets, *model_sets, f"data.image_size=[{a.size}, {a.size}]",
            f"train.device={a.device!r}", f"train.epochs={epochs}",
            f"train.compile={compile_}", f"train.compile_mode={a.compile_mode!r}",
            f"train.eval_batch_size={a.infer_batch}", "train.samples=0", *sets])
        cfg.data.cache_dir = str(self.cache)
        if batch:
            cfg.train.batch_size = batch
        if augment:
            cfg.train.augment = list(STANDARD_AUGMENT)
        config_mod.validate(cfg)
        return cfg

    def trainer(self, cfg, name="run", model=None) -> Trainer:
        """unetkit's Trainer on `cfg`, training `model` (default: the one `cfg` describes)."""
        return Trainer(cfg, self.tmp / "runs" / f"{name}-{time.monotonic_ns()}", progress=False,
                       log=lambda m: print(f"    {m}", flush=True), model=model)


def compile_choices(args, device) -> list[bool]:
    on = {"auto": device.type == "cuda", "on": True, "off": False}[args.compile]
    return [False, True] if on else [False]


# ---------------------------------------------------------------------------------------------
# The parts.


def part_decode(bench: Bench, ctx: Context) -> None:
    """Decode and resize the data once (what every unetkit run pays at start-up, or never again
    with data.cache_dir); later parts read the arrays from this cache."""
    cfg = ctx.config()
    resolve_normalisation(cfg, build_model(cfg))
    tic = time.perf_counter()
    train, val = prepare_data(cfg, Preprocess.from_config(cfg), progress=False)
    seconds = time.perf_counter() - tic
    bench.note("decode", f"decode+resize {len(train) + len(val)} pairs once",
               seconds=round(seconds, 1),
               synthetic=ctx.synthetic, train=len(train), val=len(val))


class PerSampleDataset(torch.utils.data.Dataset):
    """The write-ups' data set: each full-size JPEG opened with PIL and resized, per sample."""

    def __init__(self, items, size: int):
        self.items, self.size = items, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        item = self.items[i]
        image = Image.open(item.image).convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        mask = Image.open(item.mask).convert("L").resize((self.size, self.size), Image.NEAREST)
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div_(255)
        y = torch.from_numpy((np.asarray(mask) >= 128).astype(np.int64))
        return x, y


def part_writeups(bench: Bench, ctx: Context) -> None:
    a, device = ctx.args, ctx.device
    cfg = ctx.config(augment=False)
    items, _ = pair_items(ctx.root, cfg.data)
    train_items = split_items(items, ctx.root, cfg.data.split)["train"]
    flops = flops_per_image(lambda: build_model(cfg), a.size, 3, train=True)
    workers = [0, a.workers] if a.workers > 0 else [0]
    for n_workers in workers:
        torch.manual_seed(0)
        model = build_model(cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
        loss_fn = SegmentationLoss(cfg.train.loss, cfg.num_classes).to(device)
        loader = torch.utils.data.DataLoader(
            PerSampleDataset(train_items, a.size), batch_size=8, shuffle=True, drop_last=True,
            num_workers=n_workers, pin_memory=device.type == "cuda")
        warm = a.warmup
        steps = min(len(loader) - warm, a.writeup_steps or len(loader))
        if steps < 1:
            raise ValueError(f"{len(train_items)} training images are too few for {warm} warm-up "
                             "steps of batch 8")
        model.train()
        images, tic = 0, None
        for i, (x, y) in enumerate(loader):  # worker start-up happens before the timed steps
            if i == warm:
                sync(device)
                tic = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= warm:
                images += len(x)
            if i + 1 >= warm + steps:
                break
        sync(device)
        seconds = time.perf_counter() - tic
        label = "small U-Net" if a.small else "classic U-Net"
        bench.add("writeups", f"{label} fp32 b8, PIL per sample, {n_workers} workers",
                  images / seconds, flops, batch=8, workers=n_workers, images=images,
                  seconds=round(seconds, 2))
        del model, opt, loader
        free_memory()


def time_epochs(trainer: Trainer, device, warm_epochs: int, epochs: int
                ) -> tuple[float, int, float]:
    """(img/s, images, seconds) of `epochs` training epochs after `warm_epochs` untimed ones."""
    for _ in range(warm_epochs):
        trainer.train_epoch()
    sync(device)
    tic = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch()
    sync(device)
    seconds = time.perf_counter() - tic
    images = epochs * trainer.steps_per_epoch * trainer.batch_size
    return images / seconds, images, seconds


def train_rows(bench: Bench, ctx: Context, part: str, label: str, cfg, swap_model=None) -> None:
    a, device = ctx.args, ctx.device
    choices = compile_choices(a, device) if part != "smp" or a.compile_smp else [False]
    make = swap_model or (lambda: build_model(cfg))
    for compile_ in choices:
        cfg.train.compile = compile_
        # Another library's model goes in through the Trainer's public way in, so the step
        # function (compiled or not), optimiser and schedule are all built for it.
        trainer = ctx.trainer(cfg, part, model=swap_model() if swap_model else None)
        net = unwrap(trainer.model)
        calls = [0]  # forward passes of the named model: proof that the rows time it
        hook = net.register_forward_pre_hook(lambda *_, c=calls: c.__setitem__(0, c[0] + 1))
        flops = flops_per_image(make, a.size, 3, train=True)
        tic = time.perf_counter()
        trainer.train_epoch()  # warm-up: cuDNN autotuning, and compiling when on
        warm_s = time.perf_counter() - tic
        img_s, images, seconds = time_epochs(trainer, device, 0, a.epochs)
        hook.remove()
        precision = "bf16" if trainer.cuda and cfg.train.amp else "fp32"
        compiled = trainer.step.compiled
        row = bench.add(part, f"{label} {precision} b{trainer.batch_size}"
                        f"{' compiled' if compiled else ''}", img_s, flops,
                        batch=trainer.batch_size, compile=compiled, images=images,
                        seconds=round(seconds, 2), first_epoch_s=round(warm_s, 1),
                        augment="standard set" if cfg.train.augment else "none",
                        model=f"{type(net).__module__}.{type(net).__name__}",
                        params=sum(p.numel() for p in net.parameters()),
                        forward_calls=calls[0], steps=(1 + a.epochs) * trainer.steps_per_epoch)
        if part == "unetkit" and not compile_:
            augment_and_syncs(bench, ctx, trainer, row["img_s"])
        del trainer
        free_memory()


def part_unetkit(bench: Bench, ctx: Context) -> None:
    train_rows(bench, ctx, "unetkit", "classic U-Net" if not ctx.args.small else "small U-Net",
               ctx.config(batch=ctx.args.batch, epochs=100))


def part_timm(bench: Bench, ctx: Context) -> None:
    train_rows(bench, ctx, "timm", "TimmUNet resnet34",
               ctx.config("timm-unet", batch=ctx.args.batch, epochs=100))


def part_smp(bench: Bench, ctx: Context) -> None:
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        bench.note("smp", "segmentation_models_pytorch not installed", skipped=True)
        return
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    cfg = ctx.config("timm-unet", batch=ctx.args.batch, epochs=100)
    # smp's model states no input statistics: the ImageNet ones, as for unetkit's ResNet34 rows
    cfg.data.mean, cfg.data.std = list(IMAGENET_DEFAULT_MEAN), list(IMAGENET_DEFAULT_STD)
    train_rows(bench, ctx, "smp", "smp Unet resnet34", cfg,
               lambda: smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=1))


def augment_and_syncs(bench: Bench, ctx: Context, trainer: Trainer, train_img_s: float) -> None:
    """The input pipeline alone, and the host synchronisations in a training step (CUDA)."""
    if "augment" in ctx.args.skip:
        return
    device, b = ctx.device, trainer.batch_size
    n = len(trainer.train_data)
    batches = [torch.randperm(n)[:b].to(trainer.train_x.device)
               for _ in range(ctx.args.warmup + 20)]
    for idx in batches[:ctx.args.warmup]:
        trainer.batch(trainer.train_x, trainer.train_y, idx, True)
    sync(device)
    tic = time.perf_counter()
    for idx in batches[ctx.args.warmup:]:
        trainer.batch(trainer.train_x, trainer.train_y, idx, True)
    sync(device)
    img_s = 20 * b / (time.perf_counter() - tic)
    bench.add("augment", f"gather+augment+normalise b{b} ({len(STANDARD_AUGMENT)} ops)", img_s,
              batch=b, times_training_rate=round(img_s / train_img_s, 1))
    if device.type != "cuda":
        return
    steps = 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for i, idx in enumerate(batches[:steps]):
                images, masks = trainer.batch(trainer.train_x, trainer.train_y, idx, True)
                trainer.step(images, masks, i)
                trainer.scheduler.step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    bench.note("augment", "host syncs per training step (sync debug mode)",
               syncs_per_step=round(len(syncs) / steps, 2), first=syncs[:1])


def plain_loop(cfg, trainer: Trainer, device):
    """A plain PyTorch loop on the same model, batch and data: the training images normalised
    once into one float tensor on the device, AdamW, BCE + soft Dice written out, no schedule,
    no augmentation. Returns a function that runs `steps` steps."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr,
                            weight_decay=cfg.train.weight_decay)
    pre = trainer.preprocess
    x = pre.normalise(pre.to_unit(trainer.train_x.to(device)))
    y = trainer.train_y.to(device).float()[:, None]  # binary masks 0/1, as (N, 1, H, W)
    b, gen = trainer.batch_size, torch.Generator().manual_seed(0)

    def run(steps: int) -> None:
        perm = torch.randperm(len(x), generator=gen).to(device)
        for i in range(steps):
            idx = perm[(i * b) % (len(x) - b + 1):][:b]
            logits = model(x[idx])
            target = y[idx]
            p = logits.sigmoid()
            inter = (p * target).sum((1, 2, 3))
            dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + \
                dice.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)

    return run


def part_plain(bench: Bench, ctx: Context) -> None:
    """unetkit's training step (the real Trainer's epoch) against a plain PyTorch loop on the
    same model, image size, batch and device, neither augmenting. The two alternate, a
    training epoch's steps each, --plain-rounds times, so that a change of load on a shared
    machine hits both; the ratio is unetkit's seconds over the plain loop's, summed over the
    rounds (over 1: unetkit is slower)."""
    a, device = ctx.args, ctx.device
    cfg = ctx.config(batch=a.plain_batch, epochs=100, augment=False)
    if cfg.num_classes != 2:
        raise ValueError("the plain loop is written for a binary recipe")
    trainer = ctx.trainer(cfg, "plain")
    plain = plain_loop(cfg, trainer, device)
    steps = trainer.steps_per_epoch
    trainer.train_epoch()  # warm-up of both (allocator, first calls)
    plain(steps)
    rounds = []
    for _ in range(a.plain_rounds):
        pair = []
        for run in (trainer.train_epoch, lambda: plain(steps)):
            sync(device)
            tic = time.perf_counter()
            run()
            sync(device)
            pair.append(time.perf_counter() - tic)
        rounds.append(pair)
    ours, theirs = sum(r[0] for r in rounds), sum(r[1] for r in rounds)
    per_round = [r[0] / r[1] for r in rounds]
    label = "small U-Net" if ctx.args.small else "classic U-Net"
    bench.note("plain", f"{label} b{trainer.batch_size} {a.size}px: unetkit step / plain loop",
               ratio=round(ours / theirs, 3), unetkit_s=round(ours, 3),
               plain_s=round(theirs, 3), steps_per_round=steps, rounds=len(rounds),
               round_ratios=[round(r, 3) for r in per_round],
               unetkit_ms_per_step=round(1000 * ours / (steps * len(rounds)), 1),
               plain_ms_per_step=round(1000 * theirs / (steps * len(rounds)), 1),
               torch_threads=torch.get_num_threads())
    del trainer
    free_memory()


def part_inference(bench: Bench, ctx: Context) -> None:
    a, device = ctx.args, ctx.device
    models = [("classic U-Net" if not a.small else "small U-Net", "unet", None),
              ("TimmUNet resnet34", "timm-unet", None)]
    if "smp" not in a.skip:
        try:
            import segmentation_models_pytorch as smp
            models.append(("smp Unet resnet34", "timm-unet", lambda: smp.Unet(
                "resnet34", encoder_weights=None, in_channels=3, classes=1)))
        except ImportError:
            pass
    for label, arch, make in models:
        cfg = ctx.config(arch, batch=8, epochs=1, augment=False)
        trainer = ctx.trainer(cfg, "inference")
        model = make().to(device) if make else trainer.model
        if make and trainer.cuda:
            model = model.to(memory_format=torch.channels_last)
        model.eval()
        make = make or (lambda cfg=cfg: build_model(cfg))
        flops = flops_per_image(make, a.size, 3, train=False)
        n, b = len(trainer.train_data), a.infer_batch
        idx = (torch.arange(b) % n).to(trainer.train_x.device)
        choices = compile_choices(a, device) if a.compile_inference else [False]
        if label.startswith("smp") and not a.compile_smp:
            choices = [False]
        for compile_ in choices:
            run = torch.compile(model) if compile_ else model

            def step(trainer=trainer, idx=idx, run=run, cfg=cfg):
                images, _ = trainer.batch(trainer.train_x, trainer.train_y, idx, False)
                with trainer.autocast():
                    return logits_to_labels(run(images), cfg.train.threshold)

            with torch.no_grad():
                tic = time.perf_counter()
                for _ in range(a.warmup):
                    step()
                sync(device)
                warm_s = time.perf_counter() - tic
                tic = time.perf_counter()
                for _ in range(a.infer_steps):
                    step()
                sync(device)
                seconds = time.perf_counter() - tic
            precision = "bf16" if trainer.cuda and cfg.train.amp else "fp32"
            bench.add("inference", f"{label} {precision} b{b}{' compiled' if compile_ else ''}",
                      a.infer_steps * b / seconds, flops, batch=b, compile=compile_,
                      seconds=round(seconds, 2), warmup_s=round(warm_s, 1))
        del trainer, model
        free_memory()


def part_e2e(bench: Bench, ctx: Context) -> None:
    """Trainer.fit for the recipe's epochs: as shipped, and fast (large batch, compiled)."""
    a, device = ctx.args, ctx.device
    variants = [("kvasir-binary as shipped (batch 8)", [], False)]
    if a.e2e_batch:
        lr = 5e-5 * a.e2e_batch / 8  # the recipe's lr, scaled linearly with the batch
        variants.append((f"kvasir-binary, batch {a.e2e_batch}, lr {lr:g}",
                         [f"train.batch_size={a.e2e_batch}", f"train.lr={lr}"],
                         compile_choices(a, device)[-1]))
    for label, sets, compile_ in variants:
        cfg = ctx.config(epochs=a.e2e_epochs, augment=False, sets=sets)
        cfg.train.compile = compile_
        trainer = ctx.trainer(cfg, "e2e")
        trainer.finish = lambda: None  # curves.png and panels: after training, not part of it
        sync(device)
        tic = time.perf_counter()
        result = trainer.fit()
        sync(device)
        wall = time.perf_counter() - tic
        seconds = [r["seconds"] for r in trainer.history]
        images = a.e2e_epochs * trainer.steps_per_epoch * trainer.batch_size
        steady = statistics.median(seconds[1:] or seconds)
        bench.add("e2e", f"{label}{' compiled' if trainer.step.compiled else ''}",
                  images / wall, epochs=a.e2e_epochs, wall_s=round(wall, 1),
                  first_epoch_s=round(seconds[0], 1), median_epoch_s=round(steady, 2),
                  wall_without_first_epoch_extra_s=round(wall - seconds[0] + steady, 1),
                  checkpoints_and_logs_s=round(wall - sum(seconds), 1),
                  **{f"best_val_{result['monitor']}": round(result["best"], 4)})
        del trainer
        free_memory()


# ---------------------------------------------------------------------------------------------


def default_data() -> Path:
    if os.environ.get("UNETKIT_DATA"):
        return Path(os.environ["UNETKIT_DATA"]) / "kvasir-seg"
    repo = Path(__file__).resolve().parents[1]
    for base in (repo.parent / "shared", repo / "shared"):
        if (base / "data" / "kvasir-seg").is_dir():
            return base / "data" / "kvasir-seg"
    return repo.parent / "shared" / "data" / "kvasir-seg"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(default_data()),
                   help="the Kvasir-SEG folder (default: $UNETKIT_DATA/kvasir-seg, else "
                        "../shared/data/kvasir-seg beside the checkout; synthetic data when "
                        "missing)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true",
                   help="a short CPU-sized run: 64x64, a small U-Net, few steps, 16-18 training "
                        "images")
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--skip", default="", help=f"comma-separated parts to skip: {', '.join(PARTS)}")
    p.add_argument("--size", type=int, help="image side (default 256; 64 with --quick)")
    p.add_argument("--small", action="store_true",
                   help="the small U-Net (base 16, depth 3) instead of the classic one (on with "
                        "--quick)")
    p.add_argument("--batch", type=int,
                   help="unetkit's training batch (default 128; 8 with --quick)")
    p.add_argument("--plain-batch", type=int,
                   help="the batch of the plain-loop comparison (default 8)")
    p.add_argument("--plain-rounds", type=int,
                   help="alternations of unetkit's epoch and the plain loop (default 5; 2)")
    p.add_argument("--classic", action="store_true",
                   help="the classic U-Net also with --quick")
    p.add_argument("--infer-batch", type=int, help="inference batch (default 256; 16 with --quick)")
    p.add_argument("--epochs", type=int,
                   help="timed epochs per training row (default 4; 1 with --quick)")
    p.add_argument("--warmup", type=int,
                   help="untimed steps before each timed region (default 3; 1)")
    p.add_argument("--infer-steps", type=int, help="timed inference batches (default 20; 3)")
    p.add_argument("--writeup-steps", type=int,
                   help="timed steps of the write-ups' pipeline (default: the rest of one epoch; "
                        "3)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="DataLoader workers for the write-ups' second row (default min(8, cores))")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="also run compiled rows (auto: on CUDA only)")
    p.add_argument("--compile-mode", default="default", help="train.compile_mode for compiled rows")
    p.add_argument("--compile-smp", action="store_true", help="also compile the smp model")
    p.add_argument("--no-compile-inference", dest="compile_inference", action="store_false",
                   help="no compiled inference rows")
    p.add_argument("--e2e-epochs", type=int, help="epochs of the end-to-end runs (default 20; 2)")
    p.add_argument("--e2e-batch", type=int,
                   help="batch of the fast end-to-end run, 0 for none (default 128; 0 with "
                        "--quick)")
    p.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, TFLOP/s")
    args = p.parse_args(argv)
    q = args.quick
    defaults = {"size": (256, 64), "batch": (128, 8), "infer_batch": (256, 16), "epochs": (4, 1),
                "warmup": (3, 1), "infer_steps": (20, 3), "writeup_steps": (None, 3),
                "e2e_epochs": (20, 2), "e2e_batch": (128, 0), "plain_batch": (8, 8),
                "plain_rounds": (5, 2)}
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if q else full)
    args.small = (args.small or q) and not args.classic
    if q:
        args.workers = min(args.workers, 2)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(PARTS)
    if unknown:
        p.error(f"--skip: unknown parts {', '.join(sorted(unknown))}; known: {', '.join(PARTS)}")
    if args.compile_mode not in ("default", "reduce-overhead", "max-autotune-no-cudagraphs",
                                 "max-autotune"):
        p.error(f"--compile-mode: unknown mode {args.compile_mode}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    bench = Bench(args, device)
    print(json.dumps(bench.info, indent=1), flush=True)
    ctx = Context(args, device)
    started = time.perf_counter()
    bench.run("decode", part_decode, ctx)
    bench.run("writeups", part_writeups, ctx)  # first: before the Trainer turns on cuDNN autotuning
    bench.run("unetkit", part_unetkit, ctx)
    bench.run("plain", part_plain, ctx)
    bench.run("timm", part_timm, ctx)
    bench.run("smp", part_smp, ctx)
    bench.run("inference", part_inference, ctx)
    bench.run("e2e", part_e2e, ctx)
    writeups = [r["img_s"] for r in bench.rows if r["part"] == "writeups"]
    ours = [r["img_s"] for r in bench.rows if r["part"] == "unetkit"]
    if writeups and ours:
        bench.note("summary", "unetkit's best / the write-ups' best (classic U-Net training)",
                   speedup=round(max(ours) / max(writeups), 1))
    print(f"\n{bench.table()}\n\ntotal {time.perf_counter() - started:.0f}s; {bench.peak_note}")
    if bench.errors:
        print(f"{len(bench.errors)} parts failed: " + "; ".join(
            f"{e['part']}: {e['error']}" for e in bench.errors), file=sys.stderr)
    bench.save()
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
