"""Data-parallel training on PyTorch's own engine: `torchrun ... -m unetkit train ...`.

torchrun starts one process per device and sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous
address; `Context.from_env` joins the process group (nccl on CUDA, gloo on the CPU). A plain
`unetkit train` is a world of one, and every helper here is then a no-op.

How the work is shared, so that N processes train like one process with the same global batch:
- train.batch_size is the GLOBAL batch; each step every rank takes its contiguous share of the
  same slice of the same per-epoch permutation (the sample-order generator is seeded alike on all
  ranks, so no sampler state needs to travel between them);
- gradients are averaged by DistributedDataParallel; the logged loss is averaged over ranks;
- validation images are dealt out round-robin and the metric sums (confusion counts, per-image
  scores) are all-reduced, so the scores are those of the whole validation set;
- only rank 0 writes files and logs. Every rank holds the same model, optimiser and generator
  states, so rank 0's checkpoint resumes any world size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from unetkit.config.schema import ConfigError


@dataclass
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    sync_batchnorm: bool = False

    @classmethod
    def from_env(cls, device: torch.device, sync_batchnorm: bool = False) -> Context:
        """Join the process group torchrun describes in the environment (a world of one without)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                   sync_batchnorm)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process: cuda means cuda:LOCAL_RANK."""
        if self.active and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def local_batch(self, global_batch: int) -> int:
        if global_batch % self.world_size:
            raise ConfigError(f"train.batch_size {global_batch} must be a multiple of the "
                             f"{self.world_size} processes (it is the global batch)")
        return global_batch // self.world_size

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous share of a global batch (the whole batch in a world of one)."""
        if not self.active:
            return batch
        n = batch.shape[0] // self.world_size
        return batch[self.rank * n:(self.rank + 1) * n]

    def deal(self, n: int) -> torch.Tensor:
        """Indices 0..n-1 dealt round-robin: this rank's part of an evaluation set."""
        return torch.arange(self.rank, n, self.world_size)

    def prepare(self, model: nn.Module) -> nn.Module:
        """Before the optimiser exists: BatchNorm over the global batch, when asked for."""
        if not (self.active and self.sync_batchnorm):
            return model
        if next(model.parameters()).is_cuda:
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return convert_batchnorm(model, GlobalBatchNorm2d)

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around the model (the model itself in a world of one).

        DDP records which parameters need gradients when it is built: wrap again after freezing
        or unfreezing some of them."""
        if not self.active:
            return model
        ids = [self.local_rank] if next(model.parameters()).is_cuda else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (a copy; the tensor itself in a world of one)."""
        if not self.active:
            return tensor
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.sum(tensor) / self.world_size if self.active else tensor

    def max(self, value: float, device: torch.device) -> float:
        """The largest of the ranks' values, on every rank (one decision for the world)."""
        if not self.active:
            return value
        out = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
        return out.item()

    def any(self, flag: torch.Tensor) -> torch.Tensor:
        """True on every rank when it is true on one (so all stop, or all skip, together)."""
        return self.sum(flag.to(torch.int32)) > 0 if self.active else flag

    def reduce_metrics(self, metrics) -> None:
        """Sum a SegmentationMetrics' counts over ranks (the scores of the whole set, not an
        average of per-rank scores)."""
        if self.active:
            metrics.load_state(self.sum(metrics.state()))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with a gradient: the gradient of a sum over ranks is the sum of the
    gradients arriving from every rank."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch, on any backend.

    torch.nn.SyncBatchNorm runs on GPUs only; this is the CPU (gloo) counterpart, so CPU runs and
    their tests can use global-batch statistics too. Same parameters and buffers as BatchNorm2d,
    so its weights load into the plain model. The per-channel sums behind the mean and the
    variance are all-reduced (two collectives per layer), with their gradients."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        c, dims = x.shape[1], (0, 2, 3)
        # Two passes, as BatchNorm2d computes them: the mean, then the mean squared deviation
        # (sum(x^2)/n - mean^2 in one pass loses digits when the mean is large next to the spread).
        total = _SumOverRanks.apply(torch.cat([x.sum(dims), x.new_full((1,), x.numel() // c)]))
        n = total[-1]
        mean = total[:c] / n
        var = _SumOverRanks.apply(((x - mean.view(1, c, 1, 1)) ** 2).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                if m is None:
                    m = 1 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=m)
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def convert_batchnorm(module: nn.Module, cls=GlobalBatchNorm2d) -> nn.Module:
    """Replace every BatchNorm2d by `cls`, sharing its parameters and buffers."""
    if isinstance(module, nn.BatchNorm2d) and type(module) is not cls:
        new = cls(module.num_features, module.eps, module.momentum, module.affine,
                  module.track_running_stats)
        new.load_state_dict(module.state_dict())
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_batchnorm(child, cls))
    return module
