"""Training: `fit(cfg, run_dir)` trains a model and fills its run folder.

The data are decoded and resized once into uint8 arrays, which live on the training device when
they fit; each step gathers a batch by index, converts and augments it on the device, and runs
the model under bf16 autocast (CUDA). Nothing in the step waits for the GPU: the loss is summed
on the device and read once per progress-bar update.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import config as config_mod
from .augment import BatchAugment
from .checkpoints import load_latest, save_checkpoint
from .compiling import compile_model, first_step_or_eager, uses_cuda_graphs
from .distributed import Context
from .data import ArrayData, DataError, load_arrays, pair_items, split_items
from .images import MaskDecoder
from .losses import SegmentationLoss
from .metrics import SegmentationMetrics, logits_to_labels
from .models import build_model
from .negatives import BatchPlan, add_negatives, negative_mask
from .numerics import LossGuard
from .plots import class_palette, panel, plot_curves, save_png
from .runs import (RunError, atomic_write, read_metrics_csv, save_weights, unwrap,
                   write_metrics_csv, write_model_card, write_text)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name} but no CUDA device is available; use "
                           "--set train.device=cpu")
    return torch.device(name)


def resolve_normalisation(cfg, model) -> None:
    """Fill data.mean/std: the encoder's pretrained statistics, or [0, 1] inputs for the plain
    U-Net. Stored in the run so prediction normalises exactly as training did."""
    if cfg.data.mean is not None:
        return
    c = cfg.model.in_channels
    if hasattr(model, "pretrained_normalisation"):
        mean, std = model.pretrained_normalisation()
        if len(mean) != c:  # a grey input on an RGB encoder: average the statistics
            mean, std = [sum(mean) / len(mean)] * c, [sum(std) / len(std)] * c
    else:
        mean, std = [0.0] * c, [1.0] * c
    cfg.data.mean, cfg.data.std = [float(m) for m in mean], [float(s) for s in std]


class Normalise:
    """uint8 (B, H, W, C) on any device -> normalised float (B, C, H, W)."""

    def __init__(self, mean, std, device):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)

    def to_unit(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.permute(0, 3, 1, 2).float().div_(255)

    def __call__(self, unit: torch.Tensor) -> torch.Tensor:
        return (unit - self.mean) / self.std


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def make_optimizer(cfg, model) -> torch.optim.Optimizer:
    t = cfg.train
    params = list(model.parameters())  # frozen ones too: they get no gradient, so no update
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
    return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay, nesterov=True)


def make_scheduler(cfg, optimizer, steps_per_epoch: int):
    """Per-step LambdaLR for warmup + cosine/linear/constant; ReduceLROnPlateau per epoch."""
    t = cfg.train
    if t.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=t.plateau_factor, patience=t.plateau_patience,
            min_lr=t.min_lr)
    total, warmup = t.epochs * steps_per_epoch, int(t.warmup_epochs * steps_per_epoch)
    floor = t.min_lr / t.lr if t.lr > 0 else 0.0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if t.schedule == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        if t.schedule == "linear":
            return floor + (1 - floor) * (1 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def prepare_data(cfg, progress: bool = True) -> tuple[ArrayData, ArrayData]:
    if not cfg.data.root:
        raise DataError("no data: give --data DIR (or data.root in the config)")
    root = Path(cfg.data.root)
    items, problems = pair_items(root, cfg.data)
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise DataError(f"{root}: {len(problems)} problems; fix them (or see all with "
                        f"`unetkit check-data {root}`):\n  {shown}{more}")
    # Negative frames join the training data only: the validation scores printed while training
    # (and train.monitor) are pixel scores on frames with foreground; `unetkit evaluate` and
    # `unetkit calibrate` score the held-out negatives frame by frame.
    splits = add_negatives(split_items(items, root, cfg.data.split), root, cfg.data, ("train",))
    if len(splits["train"]) < 1 or len(splits["val"]) < 1:
        raise DataError(f"{root}: the split leaves {len(splits['train'])} training and "
                        f"{len(splits['val'])} validation images; both need at least one")
    decoder = MaskDecoder.from_config(cfg)
    size, c = tuple(cfg.data.image_size), cfg.model.in_channels
    train = load_arrays(splits["train"], size, c, decoder, cfg.data.cache_dir, "decoding train", progress)
    val = load_arrays(splits["val"], size, c, decoder, cfg.data.cache_dir, "decoding val", progress)
    return train, val


def device_tensors(data: ArrayData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The uint8 arrays as tensors: on the GPU when they take under a quarter of its free memory
    (then no host-to-device copy happens per step), else in pinned host memory."""
    images, masks = torch.from_numpy(np.ascontiguousarray(data.images)), \
        torch.from_numpy(np.ascontiguousarray(data.masks))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if images.numel() + masks.numel() < free // 4:
            return images.to(device), masks.to(device)
        return images.pin_memory(), masks.pin_memory()
    return images, masks


class Trainer:
    def __init__(self, cfg, run_dir: Path, progress: bool = True, log=print, ctx: Context = None):
        self.cfg, self.run_dir, self.progress, self.log = cfg, Path(run_dir), progress, log
        self.ctx = ctx or Context()  # a world of one unless started by torchrun
        t = cfg.train
        self.device = self.ctx.device(pick_device(t.device))
        seed_everything(t.seed, t.deterministic)
        self.train_data, self.val_data = prepare_data(cfg, progress)
        self.model = build_model(cfg)
        resolve_normalisation(cfg, self.model)
        self.model = self.ctx.prepare(self.model.to(self.device))
        self.cuda = self.device.type == "cuda"
        if self.cuda and t.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # The model the training step runs: compiled (proven or replaced by the eager model at
        # the first step, see compiling.py) or the model itself.
        self.step_model = compile_model(self.model, t.compile_mode, log) if t.compile else self.model
        self.compile_proven = self.step_model is self.model
        self.norm = Normalise(cfg.data.mean, cfg.data.std, self.device)
        self.loss_fn = SegmentationLoss(t.loss, cfg.num_classes).to(self.device)
        self.augment = BatchAugment(t.augment, seed=t.seed + 1)
        self.order = torch.Generator().manual_seed(t.seed + 2)  # the order of training samples
        self.train_x, self.train_y = device_tensors(self.train_data, self.device)
        self.val_x, self.val_y = device_tensors(self.val_data, self.device)
        n = len(self.train_data)
        self.batch_size = min(t.batch_size, n)
        self.plan = BatchPlan(negative_mask(self.train_data.masks), self.batch_size,
                              cfg.data.negative_fraction)
        self.steps_per_epoch = self.plan.steps
        self.ctx.local_batch(self.batch_size)  # fails early unless it divides among the processes
        self.guard = LossGuard(t.nan_policy, self.device, self.ctx)
        self.frozen = None
        self.set_encoder_frozen(cfg.model.freeze_encoder_epochs > 0)
        self.optimizer = make_optimizer(cfg, self.model)
        self.scheduler = make_scheduler(cfg, self.optimizer, self.steps_per_epoch)
        self.epoch, self.best, self.history = 0, -1.0, []

    # -- state ---------------------------------------------------------------------------------

    def set_encoder_frozen(self, frozen: bool) -> None:
        """A frozen encoder keeps its weights and its BatchNorm statistics (see train_epoch)."""
        self.encoder_frozen = frozen
        encoder = getattr(self.model, "encoder", None)
        if encoder is not None:
            for p in encoder.parameters():
                p.requires_grad_(not frozen)
        if frozen != self.frozen:  # DDP must know the parameters that get gradients
            self.frozen, self.train_model = frozen, self.ctx.wrap(self.step_model)

    def state(self) -> dict:
        np_state = np.random.get_state()
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "best": self.best, "monitor": self.cfg.train.monitor,
            "rng": {
                "order": self.order.get_state(), "augment": self.augment.generator.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.cuda else [],
                "python": list(random.getstate()[1]),
                "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
            },
        }

    def save_checkpoint(self) -> None:
        save_checkpoint(self.run_dir / "checkpoints", self.state())

    def load_checkpoint(self, folder: Path) -> None:
        """The state of checkpoints/last.pt (previous.pt when last.pt is damaged)."""
        state, _ = load_latest(folder, self.log)
        # The best score so far, the saved best weights and the plateau schedule's memory are all
        # in the run's own score; compared with another they would mean nothing.
        monitor = state.get("monitor", "mDice")  # runs from before train.monitor used mDice
        if monitor != self.cfg.train.monitor:
            raise RunError(f"{self.run_dir} picked its best weights by val {monitor}; resume it "
                           f"with train.monitor={monitor}, or train a new run to use "
                           f"{self.cfg.train.monitor}")
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best = state["epoch"], state["best"]
        rng = state["rng"]
        self.order.set_state(rng["order"])
        self.augment.generator.set_state(rng["augment"])
        torch.set_rng_state(rng["torch"])
        if self.cuda and rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])
        random.setstate((3, tuple(rng["python"]), None))
        np.random.set_state(("MT19937", rng["numpy"].numpy().astype(np.uint32), rng["numpy_pos"], 0, 0.0))
        self.history = [r for r in read_metrics_csv(self.run_dir / "metrics.csv")
                        if r["epoch"] <= self.epoch]

    # -- steps ---------------------------------------------------------------------------------

    def autocast(self):
        enabled = self.cuda and self.cfg.train.amp
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled) if self.cuda \
            else torch.autocast("cpu", enabled=False)

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, augment: bool):
        idx = idx.to(x.device)
        images = x[idx].to(self.device, non_blocking=True)
        masks = y[idx].to(self.device, non_blocking=True).long()
        images = self.norm.to_unit(images)
        if augment and self.augment:
            images, masks = self.augment(images, masks)
        images = self.norm(images)
        if self.cuda and self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, masks

    def train_epoch(self) -> float:
        self.model.train()
        if self.encoder_frozen and hasattr(self.model, "encoder"):
            self.model.encoder.eval()  # BatchNorm would otherwise drift off the pretrained statistics
        # On the data's device once per epoch: a host-to-device copy per step would make the
        # host wait for the GPU at every step.
        perm = self.plan.order(self.order).to(self.train_x.device)
        self.guard.start_epoch(f"epoch {self.epoch + 1}")
        total = torch.zeros((), device=self.device)
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {self.epoch + 1}/{self.cfg.train.epochs}",
                   disable=not self.progress, leave=False, unit="batch")
        per_step = not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        for step in bar:
            idx = perm[step * self.batch_size:(step + 1) * self.batch_size]
            if self.augment:  # draws for the global batch on every rank, which keeps its share
                images, masks = map(self.ctx.share, self.batch(self.train_x, self.train_y, idx, True))
            else:
                images, masks = self.batch(self.train_x, self.train_y, self.ctx.share(idx), False)
            if self.compile_proven:
                loss = self.train_step(self.train_model, images, masks, step)
            else:
                loss = self.first_step(images, masks, step)
            if loss is not None:
                total += loss
            if per_step:
                self.scheduler.step()
            self.guard.check(step, last=step == self.steps_per_epoch - 1)
            if self.progress and (step % 10 == 9 or step == self.steps_per_epoch - 1):
                bar.set_postfix(loss=f"{total.item() / (step + 1):.4f}")
        mean = self.ctx.mean(total).item() / max(1, self.guard.finish_epoch(self.steps_per_epoch))
        if self.guard.skipped:
            self.log(f"epoch {self.epoch + 1}: skipped {self.guard.skipped} of "
                     f"{self.steps_per_epoch} steps whose loss was not finite")
        if not math.isfinite(mean):
            raise FloatingPointError(
                f"epoch {self.epoch + 1}: the training loss is {mean}; lower train.lr, or check "
                "the data (run `unetkit check-data`). The best checkpoint was left as it was.")
        return mean

    def train_step(self, model, images: torch.Tensor, masks: torch.Tensor, step: int):
        """One optimiser step. Returns the detached loss, still on the device (no host sync), or
        None when train.nan_policy=skip turned a non-finite loss away before the update."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.cuda and model is not self.model and uses_cuda_graphs(self.cfg.train.compile_mode):
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are done with
        with self.autocast():
            logits = model(images)
        loss = self.loss_fn(logits, masks)
        if not self.guard.admit(loss, step):
            return None
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def first_step(self, images: torch.Tensor, masks: torch.Tensor, step: int):
        """The first step of a compiled model, which is where compiling really happens; when it
        fails, this and every later step run on the eager model (see compiling.py)."""
        eager = self.ctx.wrap(self.model)
        loss, used = first_step_or_eager(lambda model: self.train_step(model, images, masks, step),
                                         self.train_model, eager, self.log)
        if used is eager:
            self.step_model, self.train_model = self.model, eager
        self.compile_proven = True
        return loss

    @torch.no_grad()
    def validate(self) -> tuple[dict, float]:
        self.model.eval()
        cfg = self.cfg
        metrics = SegmentationMetrics(cfg.num_classes, cfg.data.classes, cfg.train.loss.ignore_index)
        loss_sum, n = torch.zeros((), device=self.device), len(self.val_data)
        bs, mine = cfg.train.eval_batch_size, self.ctx.deal(n)  # every image on one process
        for start in range(0, len(mine), bs):
            idx = mine[start:start + bs]
            images, masks = self.batch(self.val_x, self.val_y, idx, False)
            with self.autocast():  # eager: compiling eval mode and a smaller last batch would cost
                logits = self.model(images)  # more than a validation pass takes
            loss_sum += self.loss_fn(logits, masks) * len(idx)
            metrics.update(logits_to_labels(logits, cfg.train.threshold), masks)
        self.ctx.reduce_metrics(metrics)
        return metrics.compute(), self.ctx.sum(loss_sum).item() / max(1, n)

    # -- the loop ------------------------------------------------------------------------------

    def fit(self) -> dict:
        cfg, t, main = self.cfg, self.cfg.train, self.ctx.is_main  # only rank 0 writes files
        if main:
            write_text(self.run_dir / "config.yaml", config_mod.to_yaml(cfg))
        if main and not (self.run_dir / "config.json").exists():
            write_model_card(self.run_dir, cfg)
        self.log(f"training {cfg.model.arch} on {len(self.train_data)} images, validating on "
                 f"{len(self.val_data)}, {t.epochs} epochs, device {self.device}; run folder "
                 f"{self.run_dir}")
        started = time.perf_counter()
        while self.epoch < t.epochs:
            tic = time.perf_counter()
            self.set_encoder_frozen(self.epoch < cfg.model.freeze_encoder_epochs)
            train_loss = self.train_epoch()
            scores, val_loss = self.validate()
            self.epoch += 1
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(scores[t.monitor])
            seconds = time.perf_counter() - tic
            row = {"epoch": self.epoch, "train_loss": train_loss, "val_loss": val_loss,
                   "val_mDice": scores["mDice"], "val_mIoU": scores["mIoU"],
                   "val_dice": scores["dice"], "val_iou": scores["iou"],
                   "lr": self.optimizer.param_groups[0]["lr"], "seconds": seconds}
            self.history.append(row)
            improved = scores[t.monitor] > self.best
            if improved:
                self.best = scores[t.monitor]
            if improved and main:
                save_weights(self.model, self.run_dir / "model.safetensors")
                write_model_card(self.run_dir, cfg, {"epoch": self.epoch, "split": "val", **scores})
            if main:
                write_metrics_csv(self.run_dir / "metrics.csv", self.history)
                self.save_checkpoint()
            self.log(f"epoch {self.epoch:3d}/{t.epochs}  train loss {train_loss:.4f}  val loss "
                     f"{val_loss:.4f}  val mDice {scores['mDice']:.4f}  mIoU {scores['mIoU']:.4f}"
                     f"  dice {scores['dice']:.4f}  lr {row['lr']:.2e}  {seconds:.1f}s"
                     f"{'  *best' if improved else ''}")
        self.log(f"done in {time.perf_counter() - started:.1f}s; best val {t.monitor} {self.best:.4f}")
        if main:
            self.finish()
        return {"best": self.best, "monitor": t.monitor, "epochs": self.epoch}

    def finish(self) -> None:
        """curves.png and the sample panels, from the best weights."""
        plot_curves(self.history, self.run_dir / "curves.png")
        from .runs import load_weights
        load_weights(unwrap(self.model), self.run_dir / "model.safetensors")
        self.model.eval()
        cfg, k = self.cfg, min(self.cfg.train.samples, len(self.val_data))
        if k == 0:
            return
        palette = class_palette(cfg.num_classes, cfg.data.class_colors)
        images, masks = self.batch(self.val_x, self.val_y, torch.arange(k), False)
        with torch.no_grad(), self.autocast():
            pred = logits_to_labels(self.model(images), cfg.train.threshold).cpu().numpy()
        for i in range(k):
            name = self.val_data.names[i]
            img = np.asarray(self.val_data.images[i])
            save_png(self.run_dir / "samples" / f"{name}.png",
                     panel(img, np.asarray(self.val_data.masks[i]), pred[i].astype(np.uint8),
                           palette, name))


def default_run_dir(cfg) -> Path:
    base = Path("runs") / cfg.name
    path, i = base, 1
    while path.exists():
        i += 1
        path = Path(f"{base}-{i}")
    return path


def fit(cfg, run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
        log=print) -> dict:
    """Train `cfg` into `run_dir` (a new folder unless `resume`); returns the best scores."""
    ctx = Context.from_env(pick_device(cfg.train.device), cfg.train.sync_batchnorm)
    try:
        if not ctx.is_main:  # one log and one progress bar for the whole world
            log, progress = (lambda *a, **k: None), False
        run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
        if not resume and run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(f"{run_dir} already holds a run; continue it with --resume, or "
                           "choose another --out")
        ctx.barrier()  # every rank has looked before rank 0 writes anything
        run_dir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(cfg, run_dir, progress, log, ctx)
        if resume:
            trainer.load_checkpoint(run_dir / "checkpoints")
            log(f"resuming {run_dir} after epoch {trainer.epoch} (best val "
                f"{cfg.train.monitor} {trainer.best:.4f})")
        if ctx.active:
            log(f"distributed: {ctx.world_size} processes, {trainer.batch_size // ctx.world_size}"
                f" images each per step (global batch {trainer.batch_size})")
        result = trainer.fit()
        # Rank 0 still writes the last files while the others are done. A rank that tears its
        # connections down while a peer still runs can abort at exit (gloo, seen on the CPU), so
        # every rank waits here and all leave together.
        ctx.barrier()
        return result
    finally:
        ctx.close()
