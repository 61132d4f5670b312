"""`train.time_limit`: a run that ends within the time it is given, with its schedule completed.

Without a limit a run trains `train.epochs` epochs. With one, the number of epochs is a plan
that is revised after every epoch: from the mean time of the epochs so far (training and
validation; the checkpoint written after it, well under 1 % of an epoch, is not counted), as
many more epochs as fit in the time left, never more than `train.epochs`. The learning-rate
schedule, warm-up included, is stretched over the planned epochs (`Horizon.stretch`), so the
last epoch ends on the schedule's floor however early the limit comes.

The plan is revised before an epoch starts, never inside one, so a run may end past its limit by
at most one epoch: when an epoch took longer than measured so far and no whole epoch fits any
more, one more epoch still runs if the schedule has not reached its end, so that the weights the
run keeps were trained at the annealed learning rate. The time used is kept in the checkpoint: a
resumed run has only what is left of its limit.
"""

from __future__ import annotations

import math


class Horizon:
    """The planned number of epochs, revised from measured epoch times under a time limit.

    `epochs` is read by the learning-rate schedule (see `optim.make_scheduler`) at every step,
    so a revised plan re-stretches the schedule from the next step on."""

    def __init__(self, epochs: int, limit: float | None = None):
        self.max_epochs = epochs
        self.epochs = epochs
        self.limit = limit  # seconds, or None: no limit
        self.used = 0.0  # seconds of training so far, over every start of the run

    def stretch(self, epochs: float) -> float:
        """`epochs` of the configured schedule (its warm-up), stretched to the planned length."""
        return epochs * self.epochs / self.max_epochs

    def update(self, done: int, seconds: float) -> None:
        """After epoch `done`, which took `seconds` (the same on every process): the new plan."""
        self.used += seconds
        if self.limit is None:
            return
        per_epoch = self.used / max(1, done)  # the mean, over every epoch of the run so far
        more = max(0, math.floor((self.limit - self.used) / per_epoch))
        planned = min(self.max_epochs, done + more)
        if planned <= done < self.epochs:
            planned = done + 1  # the schedule has not ended: one more epoch anneals it
        self.epochs = max(planned, done)

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "used": self.used}

    def load_state_dict(self, state: dict | None) -> None:
        if state:  # checkpoints of runs without a limit have none
            self.epochs = min(int(state["epochs"]), self.max_epochs) if self.limit else \
                self.max_epochs
            self.used = float(state["used"])
