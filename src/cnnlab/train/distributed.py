"""Data-parallel training on torch.distributed: ``torchrun --nproc-per-node N -m cnnlab train ...``.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; with more than one process, ``setup``
joins the process group (gloo on the CPU, NCCL on CUDA) and the trainer wraps the model in
DistributedDataParallel. The results do not depend on the number of processes:

* ``--batch-size`` is the global batch and the learning rate follows it; every rank walks the same
  epoch plan (order and augmentation are a function of seed, epoch and sample index) and takes its
  own contiguous slice of each global batch, so the ranks together see exactly the one-process batch;
* DDP averages the gradients of the ranks' mean losses, which is the gradient of the global mean;
* with ``--sync-bn`` BatchNorm normalizes over the global batch: torch's ``nn.SyncBatchNorm`` on
  GPUs, and on the CPU (which it does not support) ``CpuSyncBatchNorm`` below, which all-reduces the
  per-channel sums (and, backwards, their gradients) across the processes.

Only rank 0 logs and writes the run directory; checkpoints hold the unwrapped model's state, so a
run saved by any world size loads in any other. Collectives time out (``CNNLAB_DIST_TIMEOUT``
seconds, default 300), so ranks whose peer died exit with a message instead of hanging.
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ..errors import CnnlabError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE_PROCESS = World()


def setup(device_name: str) -> tuple[World, str]:
    """Join the process group torchrun describes (if any); returns the world and the device to use
    (on CUDA, each process takes the GPU of its local rank)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE_PROCESS, device_name
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get("CNNLAB_DIST_TIMEOUT", "300")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
    if cuda:
        torch.cuda.set_device(world.local_rank)
        return world, f"cuda:{world.local_rank}"
    return world, device_name


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        gc.collect()  # DDP's reducer, in reference cycles, holds the group: free it while torch can
        dist.destroy_process_group()


def local_batch(batch_size: int, world: World) -> int:
    if batch_size % world.size:
        raise CnnlabError(
            f"--batch-size {batch_size} is the global batch and must divide among the {world.size} processes"
        )
    return batch_size // world.size


def all_sum(values: list[float], world: World, device: torch.device) -> list[float]:
    """Element-wise sums over the ranks (for the logged loss and accuracy)."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def from_rank_0(obj: T, world: World) -> T:
    """Rank 0's ``obj`` on every rank: a choice every rank must make alike (stopping early) cannot rest
    on figures that differ by rank, as evaluations with each rank's own BatchNorm statistics do."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _AllReduceSum(torch.autograd.Function):
    """A sum over the processes whose gradient is the sum of the processes' gradients: every process's
    statistics feed every process's loss."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch across the processes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        xf = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float32, device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        c, n = x.shape[1], stats[-1]
        mean = stats[:c] / n
        var = stats[c : 2 * c] / n - mean * mean
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1), m)  # unbiased, as BatchNorm keeps it
        y = (xf - mean[:, None, None]) * torch.rsqrt(var[:, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[:, None, None] + self.bias[:, None, None]
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d becomes synchronized: torch's SyncBatchNorm on GPUs, ours on the CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = CpuSyncBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            ).to(device)
            sync.load_state_dict(child.state_dict())
            setattr(model, name, sync)
        else:
            convert_sync_batchnorm(child, device)
    return model
