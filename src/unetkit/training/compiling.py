"""torch.compile for the training step, with a fallback to eager that a run can rely on.

`torch.compile(model)` returns at once; the real compiling happens at the first forward (and, for
the backward graph, at the first backward), so that is where a missing compiler, an unsupported
operation or a backend bug shows up. `first_step_or_eager` runs the first training step on the
compiled model and, if it raises, puts the model's buffers back as they were (BatchNorm running
statistics may already have moved), logs one line, and runs the same step eagerly: compiling is an
optimisation and never the reason a run fails or trains differently.

Modes (`train.compile_mode`):
- "default": Inductor kernels, no CUDA graphs; the safe choice, compiles in about a minute.
- "reduce-overhead": adds CUDA graphs, which remove the per-kernel launch cost. That pays only
  when the GPU finishes a step faster than Python can launch it (small batches, small models);
  at the batch sizes that keep a GPU busy the launch cost is already hidden.
- "max-autotune-no-cudagraphs" / "max-autotune": also benchmark kernel choices while compiling
  (several minutes of compiling for a few per cent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from unetkit.config.names import COMPILE_MODES

T = TypeVar("T")


def compile_model(model: nn.Module, mode: str = "default", log=print) -> nn.Module:
    """The compiled model, or the model itself (with a note) when torch.compile is unavailable."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"train.compile_mode must be one of {', '.join(COMPILE_MODES)}; "
                         f"got '{mode}'")
    try:
        return torch.compile(model, mode=None if mode == "default" else mode)
    except Exception as exc:  # e.g. an unsupported Python version: compile is an optimisation
        log(f"torch.compile unavailable ({_short(exc)}); training eagerly")
        return model


def uses_cuda_graphs(mode: str) -> bool:
    return mode in ("reduce-overhead", "max-autotune")


def first_step_or_eager(step: Callable[[nn.Module], T], compiled: nn.Module, eager: nn.Module,
                        log=print) -> tuple[T, nn.Module]:
    """Run `step(compiled)`; if compiling fails there, restore `eager`'s buffers and run
    `step(eager)`. Returns the step's result and the model to use from now on.

    `step` must start from a clean state (zero the gradients first) and must not have stepped
    the optimiser before the failure, which holds when it fails in forward or backward.
    """
    if compiled is eager:
        return step(eager), eager
    saved = {name: b.detach().clone() for name, b in eager.named_buffers()}
    try:
        return step(compiled), compiled
    except Exception as exc:  # whatever the compiler raises; a real error recurs eagerly below
        with torch.no_grad():
            for name, b in eager.named_buffers():
                b.copy_(saved[name])
        log(f"torch.compile failed at the first training step ({_short(exc)}); training eagerly")
        return step(eager), eager


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


class StepFunction:
    """The training step, run on the compiled model or the eager one: `step(images, masks, i)`.

    Made from the model and `run(model, *args)`, the step's body written for any model. With
    `compile` the first call is `first_step_or_eager`'s; after it, every call runs the model
    that worked. `wrap` puts the model in a DistributedDataParallel (identity in a world of one);
    `rewrap()` must follow a change of which parameters need gradients (DDP records them).
    """

    def __init__(self, model: nn.Module, run: Callable[..., Any], compile: bool = False,
                 mode: str = "default", log=print, wrap: Callable[[nn.Module], nn.Module] = None):
        self.model, self.run, self.log = model, run, log
        self.wrap = wrap or (lambda m: m)
        self.net = compile_model(model, mode, log) if compile else model  # what the step runs
        self.proven = self.net is model  # an eager step needs no first-step trial
        self.cuda_graphs = compile and uses_cuda_graphs(mode)
        self.rewrap()

    @property
    def compiled(self) -> bool:
        return self.net is not self.model

    def rewrap(self) -> None:
        self.runner = self.wrap(self.net)

    def __call__(self, *args: Any) -> Any:
        if self.compiled and self.cuda_graphs and next(self.model.parameters()).is_cuda:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are done with
        if self.proven:
            return self.run(self.runner, *args)
        eager = self.wrap(self.model)
        result, used = first_step_or_eager(lambda m: self.run(m, *args), self.runner, eager,
                                           self.log)
        if used is eager:
            self.net, self.runner = self.model, eager
        self.proven = True
        return result

