"""Catching a NaN or infinite training loss at the step it happens.

train.nan_policy:
- stop (default): the run stops with a message naming the epoch and step. Nothing is saved after
  the bad step, so model.safetensors (the best weights) and the checkpoints keep their last good
  state, and `--resume` restarts from there (perhaps with a lower train.lr).
- skip: a step whose loss is not finite makes no update (no backward, no optimiser step) and is
  counted; an epoch in which every step is skipped stops the run.

Cost: on the CPU reading a flag is free, so every step is checked. On a GPU, reading it is a
host sync that would stall the queue of kernels, so `stop` keeps a "first bad step" number on the
device and reads it every `check_every` steps (the progress-bar cadence): the run stops at most
that many steps late, and the weights it has then are never written. `skip` must know before the
update, so it reads the flag every step: one sync per step, as AMP's GradScaler also makes.
In a distributed run the flag is all-reduced, so all processes stop or skip together.
"""

from __future__ import annotations

import torch

from unetkit.config.names import POLICIES


class LossGuard:
    def __init__(self, policy: str, device: torch.device, ctx, check_every: int = 10):
        if policy not in POLICIES:
            raise ValueError(f"train.nan_policy must be one of {', '.join(POLICIES)}; "
                             f"got '{policy}'")
        self.skip, self.device, self.ctx = policy == "skip", device, ctx
        self.every = 1 if device.type == "cpu" else check_every
        self.start_epoch("")

    def start_epoch(self, label: str) -> None:
        self.label, self.skipped = label, 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=self.device)

    def admit(self, loss: torch.Tensor, step: int) -> bool:
        """Whether this step's update may go ahead (False only under `skip`, for a bad loss)."""
        bad = ~torch.isfinite(loss.detach())
        if self.skip:
            if bool(self.ctx.any(bad)):
                self.skipped += 1
                return False
            return True
        self.first_bad = torch.where((self.first_bad < 0) & bad, step, self.first_bad)
        return True

    def check(self, step: int, last: bool) -> None:
        """Under `stop`: raise at the check cadence (and at the epoch's end) after a bad step."""
        if self.skip or not (last or step % self.every == self.every - 1):
            return
        if not bool(self.ctx.any(self.first_bad >= 0)):
            return
        first = int(self.first_bad.item())
        where = f"step {first}" if first >= 0 else "a step on another process"
        raise FloatingPointError(
            f"{self.label}, {where}: the training loss is not finite (NaN or inf). Lower "
            "train.lr, check the data with `unetkit check-data`, or set train.nan_policy=skip "
            "to skip such steps. model.safetensors and the checkpoints were left as they were; "
            "continue with `unetkit train --resume RUN_DIR`.")

    def finish_epoch(self, steps: int) -> int:
        """The number of steps that made an update; stops when there were none."""
        done = steps - self.skipped
        if steps and done == 0:
            raise FloatingPointError(
                f"{self.label}: every step had a non-finite loss and was skipped; lower "
                "train.lr or check the data with `unetkit check-data`")
        return done
