"""Training: `fit(cfg, run_dir)` trains a model and fills its run folder.

The data are decoded and resized once into uint8 arrays, which live on the training device when
they fit; each step gathers a batch by index, converts and augments it on the device, and runs
the model under bf16 autocast (CUDA). Nothing in the step waits for the GPU: the loss is summed
on the device and read once per progress-bar update.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from unetkit import config as config_mod
from unetkit.core.files import write_text
from unetkit.core.metric_names import POINT_RENAMES, point_keys
from unetkit.core.text import plural
from unetkit.data.arrays import device_tensors, prepare_data
from unetkit.data.layouts import find_layout
from unetkit.data.negatives import BatchPlan, negative_mask
from unetkit.data.preprocess import Preprocess, resolve_normalisation
from unetkit.evaluation.metrics import SegmentationMetrics, logits_to_labels
from unetkit.io.plots import class_palette, panel, plot_curves, save_png
from unetkit.models.size import parameter_count
from unetkit.models.unet import SegmentationModel, build_model
from unetkit.runs.check import read_model_card
from unetkit.runs.folder import (
    RunError,
    check_state_dict,
    load_weights,
    read_metrics_csv,
    save_weights,
    unwrap,
    write_metrics_csv,
    write_model_card,
)
from unetkit.training.augment import BatchAugment
from unetkit.training.budget import Horizon
from unetkit.training.checkpoints import load_latest, rng_state, save_checkpoint, set_rng_state
from unetkit.training.compiling import StepFunction
from unetkit.training.distributed import Context
from unetkit.training.loggers import Loggers
from unetkit.training.losses import SegmentationLoss
from unetkit.training.numerics import LossGuard
from unetkit.training.optim import make_optimizer, make_scheduler, steps_per_batch
from unetkit.training.setup import pick_device, seed_everything
from unetkit.training.tricks import Tricks


class Trainer:
    """One run's training: the model, its data as device tensors, one step function, and the
    loop (`fit`). Give `model` to train another network than the one `cfg` describes (any
    `nn.Module` taking and giving (B, C, H, W); see models.SegmentationModel for what freezing
    and the default normalisation need)."""

    def __init__(self, cfg, run_dir: Path, progress: bool = True, log=print,
                 ctx: Context | None = None, model: nn.Module | None = None):
        self.cfg, self.run_dir, self.progress, self.log = cfg, Path(run_dir), progress, log
        self.ctx = ctx or Context()  # a world of one unless started by torchrun
        t = cfg.train
        self.device = self.ctx.device(pick_device(t.device))
        self.cuda = self.device.type == "cuda"
        seed_everything(t.seed, t.deterministic)

        # The model, and the preprocessing it implies (its default normalisation).
        model = model if model is not None else build_model(cfg)
        resolve_normalisation(cfg, model)
        self.model = self.ctx.prepare(model.to(self.device))
        if self.cuda and t.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.preprocess = Preprocess.from_config(cfg)  # the one path from file to input

        # The data, decoded once, as uint8 tensors on the device when they fit.
        self.train_data, self.val_data = prepare_data(cfg, self.preprocess, progress)
        self.train_x, self.train_y = device_tensors(self.train_data, self.device)
        self.val_x, self.val_y = device_tensors(self.val_data, self.device)
        self.batch_size = min(t.batch_size, len(self.train_data))
        self.plan = BatchPlan(negative_mask(self.train_data.masks), self.batch_size,
                              cfg.data.negative_fraction)  # negative frames' share of a batch
        self.steps_per_epoch = self.plan.steps
        self.ctx.local_batch(self.batch_size)  # fails early unless it divides among the processes

        # What a step uses: loss, augmentation, sample order, NaN guard, optimiser, schedule.
        self.loss_fn = SegmentationLoss(t.loss, cfg.num_classes, cfg.data.ignore_index)
        self.loss_fn = self.loss_fn.to(self.device)
        self.augment = BatchAugment(t.augment, seed=t.seed + 1)
        self.order = torch.Generator().manual_seed(t.seed + 2)  # the order of training samples
        self.guard = LossGuard(t.nan_policy, self.device, self.ctx)
        # Multi-scale, side heads, clipping, EMA (tricks.py; each off unless configured).
        self.tricks = Tricks(cfg, unwrap(self.model), self.device)
        self.optimizer = make_optimizer(cfg, self.model)
        if self.tricks.parameters():
            self.optimizer.add_param_group({"params": self.tricks.parameters()})
        self.horizon = Horizon(t.epochs, t.time_limit)  # the epochs planned (budget.py)
        self.scheduler = make_scheduler(cfg, self.optimizer, self.steps_per_epoch, self.horizon)
        # The step function: compiled (falling back to eager at the first step if compiling
        # fails, see compiling.py) or eager; in a DistributedDataParallel when distributed.
        self.step = StepFunction(self.model, self.train_step, t.compile, t.compile_mode, log,
                                 self.ctx.wrap)
        self.freeze_encoder(cfg.model.freeze_encoder_epochs > 0)
        self.epoch, self.best, self.history = 0, -1.0, []
        self.loggers = Loggers(t.loggers if self.ctx.is_main else [], self.run_dir, log,
                               t.log_images_every)  # TensorBoard, MLflow, W&B: rank 0 only

    # -- the loop ------------------------------------------------------------------------------

    def fit(self) -> dict:
        cfg, t, main = self.cfg, self.cfg.train, self.ctx.is_main  # only rank 0 writes files
        if main:  # this run's settings, also when resumed with changed ones
            write_text(self.run_dir / "config.yaml", config_mod.to_yaml(cfg))
            write_model_card(self.run_dir, cfg, self.card_metrics())
        self.log(f"data {cfg.data.root}: {find_layout(Path(cfg.data.root), cfg.data).how}")
        self.log(f"training {cfg.model.arch} ({parameter_count(unwrap(self.model))}) on "
                 f"{plural(len(self.train_data), 'image')}, validating on {len(self.val_data)}, "
                 f"{plural(t.epochs, 'epoch')}{self.limit_text()}, device {self.device}; run "
                 f"folder {self.run_dir}")
        self.loggers.start(cfg.to_dict(), self.epoch)
        started = time.perf_counter()
        while self.epoch < self.horizon.epochs:
            tic = time.perf_counter()
            self.freeze_encoder(self.epoch < cfg.model.freeze_encoder_epochs)
            train_loss = self.train_epoch()
            train_seconds = time.perf_counter() - tic
            scores, val_loss = self.validate()
            self.epoch += 1
            if not steps_per_batch(self.scheduler):  # the plateau schedule watches the score
                self.scheduler.step(scores[t.monitor])
            row = {"epoch": self.epoch, "train_loss": train_loss, "val_loss": val_loss,
                   "val_mDice_point": scores["mDice_point"],
                   "val_mIoU_point": scores["mIoU_point"],
                   "val_dice": scores["dice"], "val_iou": scores["iou"],
                   "lr": self.optimizer.param_groups[0]["lr"],
                   "seconds": time.perf_counter() - tic,
                   # training images per second, the whole world's (validation not counted)
                   "images_per_s": self.steps_per_epoch * self.batch_size / train_seconds}
            # the time this epoch took, as the slowest process saw it: one plan for all
            self.horizon.update(self.epoch, self.ctx.max(row["seconds"], self.device))
            row["planned_epochs"] = self.horizon.epochs
            self.history.append(row)
            improved = scores[t.monitor] > self.best
            if improved:
                self.best = scores[t.monitor]
            if main:
                self.save(scores if improved else None)
            self.loggers.log_epoch(row)
            if self.loggers.wants_images(self.epoch, self.horizon.epochs):
                self.loggers.log_images(self.sample_panels(), self.epoch)
            self.log(f"epoch {self.epoch:3d}/{self.horizon.epochs}  train loss {train_loss:.4f}  "
                     f"val loss {val_loss:.4f}  val mDice@point {scores['mDice_point']:.4f}  "
                     f"mIoU@point {scores['mIoU_point']:.4f}  dice {scores['dice']:.4f}  "
                     f"lr {row['lr']:.2e}  {row['seconds']:.1f}s"
                     f"{'  *best' if improved else ''}")
        self.log(f"done in {time.perf_counter() - started:.1f}s; best val {t.monitor} "
                 f"{self.best:.4f}")
        if main:
            self.finish()
        self.loggers.close()  # artifacts: the files finish() wrote
        return {"best": self.best, "monitor": t.monitor, "epochs": self.epoch}

    def limit_text(self) -> str:
        limit = self.cfg.train.time_limit
        return "" if limit is None else f" at most, within {limit / 60:.1f} min (train.time_limit)"

    def train_epoch(self) -> float:
        """One pass over the training data; the mean loss (one host sync, at the end)."""
        self.model.train()  # a frozen encoder stays in eval mode (models.SegmentationModel)
        # On the data's device once per epoch: a host-to-device copy per step would make the
        # host wait for the GPU at every step.
        perm = self.plan.order(self.order).to(self.train_x.device)
        self.guard.start_epoch(f"epoch {self.epoch + 1}")
        total = torch.zeros((), device=self.device)
        per_step = steps_per_batch(self.scheduler)
        bar = tqdm(range(self.steps_per_epoch), unit="batch", leave=False,
                   desc=f"epoch {self.epoch + 1}/{self.horizon.epochs}",
                   disable=not self.progress)
        for step in bar:
            idx = perm[step * self.batch_size:(step + 1) * self.batch_size]
            if self.augment:  # draws for the global batch on every rank, which keeps its share
                batch = self.batch(self.train_x, self.train_y, idx, True)
                images, masks = map(self.ctx.share, batch)
            else:
                images, masks = self.batch(self.train_x, self.train_y, self.ctx.share(idx), False)
            images, masks = self.tricks.batch(images, masks)
            loss = self.step(images, masks, step)
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

    def batch(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, augment: bool
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images `idx` of the uint8 tensors (x, y) as the network's input and class targets."""
        idx = idx.to(x.device)
        images = x[idx].to(self.device, non_blocking=True)
        masks = y[idx].to(self.device, non_blocking=True).long()
        images = self.preprocess.to_unit(images)
        if augment and self.augment:  # on [0, 1] pixels, before normalising
            images, masks = self.augment(images, masks)
        images = self.preprocess.normalise(images)
        if self.cuda and self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, masks

    def train_step(self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                   step: int) -> torch.Tensor | None:
        """One optimiser step on `model` (compiled or eager, see `self.step`). Returns the
        detached loss, still on the device (no host sync), or None when train.nan_policy=skip
        turned a non-finite loss away before the update."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            logits = model(images)
        loss = self.tricks.loss(self.loss_fn(logits, masks), self.loss_fn, logits, masks)
        if not self.guard.admit(loss, step):
            return None
        loss.backward()
        self.tricks.before_update(self.optimizer)
        self.optimizer.step()
        self.tricks.after_update(unwrap(self.model))
        return loss.detach()

    @torch.no_grad()
    def validate(self) -> tuple[dict, float]:
        """Validation scores, and the loss of each image on its own averaged over the images
        (so it does not depend on train.eval_batch_size or the number of processes)."""
        model = self.tricks.eval_model(self.model).eval()
        cfg = self.cfg
        metrics = SegmentationMetrics(cfg.num_classes, cfg.data.classes, cfg.data.ignore_index)
        loss_sum, n = torch.zeros((), device=self.device), len(self.val_data)
        bs, mine = cfg.train.eval_batch_size, self.ctx.deal(n)  # every image on one process
        for start in range(0, len(mine), bs):
            idx = mine[start:start + bs]
            images, masks = self.batch(self.val_x, self.val_y, idx, False)
            with self.autocast():  # eager: compiling eval mode and a smaller last batch would cost
                logits = model(images)  # more than a validation pass takes
            for i in range(len(idx)):
                loss_sum += self.loss_fn(logits[i:i + 1], masks[i:i + 1])
            metrics.update(logits_to_labels(logits, cfg.train.threshold), masks)
        self.ctx.reduce_metrics(metrics)
        return metrics.compute(), self.ctx.sum(loss_sum).item() / max(1, n)

    def autocast(self):
        enabled = self.cuda and self.cfg.train.amp
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled) if self.cuda \
            else torch.autocast("cpu", enabled=False)

    def freeze_encoder(self, frozen: bool) -> None:
        """Fix or release the encoder (models.SegmentationModel); a model without that
        interface always trains whole."""
        model = unwrap(self.model)
        if not isinstance(model, SegmentationModel) or frozen == model.encoder_frozen:
            return
        model.freeze_encoder(frozen)
        self.step.rewrap()  # DDP must know the parameters that get gradients

    # -- the run folder ------------------------------------------------------------------------

    def save(self, best_scores: dict | None) -> None:
        """After an epoch: the best weights and scores when improved, metrics.csv, checkpoint."""
        if best_scores is not None:
            save_weights(self.tricks.eval_model(self.model), self.run_dir / "model.safetensors")
            write_model_card(self.run_dir, self.cfg, self.card_metrics(best_scores))
        write_metrics_csv(self.run_dir / "metrics.csv", self.history)
        save_checkpoint(self.run_dir / "checkpoints", self.state())

    def card_metrics(self, scores: dict | None = None) -> dict:
        """config.json's metrics: `scores` of this epoch, or those already there (a resumed
        run keeps the scores of its best weights)."""
        if scores is not None:
            return {"epoch": self.epoch, "split": "val", **scores}
        if (self.run_dir / "config.json").exists():
            return point_keys(read_model_card(self.run_dir).get("metrics", {}))
        return {}

    def generators(self) -> dict[str, torch.Generator]:
        return {"order": self.order, "augment": self.augment.generator,
                **self.tricks.generators()}

    def state(self) -> dict:
        return {"model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": self.epoch, "best": self.best, "monitor": self.cfg.train.monitor,
                "rng": rng_state(self.generators(), self.cuda), "tricks": self.tricks.state_dict(),
                "horizon": self.horizon.state_dict()}

    def load_checkpoint(self, folder: Path) -> None:
        """The state of checkpoints/last.pt (previous.pt when last.pt is damaged)."""
        state, _ = load_latest(folder, self.log, fits=lambda state, path: check_state_dict(
            unwrap(self.model), state["model"], path))
        # The best score so far, the saved best weights and the plateau schedule's memory are all
        # in the run's own score; compared with another they would mean nothing.
        # runs from before train.monitor used mDice; the old names of the point scores too
        monitor = state.get("monitor", "mDice")
        monitor = POINT_RENAMES.get(monitor, monitor)
        if monitor != self.cfg.train.monitor:
            raise RunError(f"{self.run_dir} picked its best weights by val {monitor}; resume it "
                           f"with train.monitor={monitor}, or train a new run to use "
                           f"{self.cfg.train.monitor}")
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best = state["epoch"], state["best"]
        self.tricks.load_state_dict(state.get("tricks"))
        self.horizon.load_state_dict(state.get("horizon"))
        set_rng_state(state["rng"], self.generators(), self.cuda)
        self.history = [r for r in read_metrics_csv(self.run_dir / "metrics.csv")
                        if r["epoch"] <= self.epoch]

    def finish(self) -> None:
        """curves.png and the sample panels, from the best weights."""
        plot_curves(self.history, self.run_dir / "curves.png",
                    side_losses=bool(self.cfg.train.deep_supervision))
        load_weights(unwrap(self.model), self.run_dir / "model.safetensors")
        for name, image in self.sample_panels():
            save_png(self.run_dir / "samples" / f"{name}.png", image)

    def sample_panels(self) -> list[tuple[str, np.ndarray]]:
        """(name, image | truth | prediction) for the first train.samples validation images."""
        self.model.eval()
        cfg, k = self.cfg, min(self.cfg.train.samples, len(self.val_data))
        if k == 0:
            return []
        palette = class_palette(cfg.num_classes, cfg.data.class_colors)
        images, _ = self.batch(self.val_x, self.val_y, torch.arange(k), False)
        with torch.no_grad(), self.autocast():
            pred = logits_to_labels(self.model(images), cfg.train.threshold).cpu().numpy()
        names = self.val_data.names
        return [(names[i], panel(np.asarray(self.val_data.images[i]),
                                 np.asarray(self.val_data.masks[i]), pred[i].astype(np.uint8),
                                 palette, names[i])) for i in range(k)]
