"""Data-parallel training under ``torchrun``: process group, DDP, BatchNorm over ranks.

:func:`alseg_core.training.train` turns data parallel when ``WORLD_SIZE`` > 1 (set by
``torchrun``, which ``alseg train --nproc N`` launches): gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alseg_core.models import SegmentationModel


class SyncBatchNormCPU(torch.nn.BatchNorm2d):
    """BatchNorm over the global batch on CPU ranks: the per-channel sums are summed over
    ranks with a differentiable all-reduce (torch's SyncBatchNorm is GPU-only), so the
    data-parallel forward and backward are those of one process on the whole batch."""

    group: Any = None  # its own process group: DDP's gradient buckets use the default one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        import warnings

        from torch.distributed.nn.functional import all_reduce

        group = self.group or torch.distributed.group.WORLD
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype)
        with warnings.catch_warnings():  # deprecated for a functional-collectives twin
            warnings.simplefilter("ignore", FutureWarning)
            # Two passes, as one process computes them: the mean, then the variance.
            sums = all_reduce(torch.cat([x.sum((0, 2, 3)), count]), group=group)
            n = sums[-1]
            mean = sums[:-1] / n
            centred = x - mean[None, :, None, None]
            var = all_reduce((centred * centred).sum((0, 2, 3)), group=group) / n
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            unbiased = var.detach() * (n.detach() / (n.detach() - 1).clamp_min(1.0))
            self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
            self.num_batches_tracked.add_(1)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def sync_batchnorm_cpu(module: torch.nn.Module, group: Any = None) -> torch.nn.Module:
    """Every BatchNorm2d of ``module`` as :class:`SyncBatchNormCPU` (same state)."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            sync = SyncBatchNormCPU(child.num_features, child.eps, child.momentum,
                                     child.affine, child.track_running_stats)  # fmt: skip
            sync.load_state_dict(child.state_dict())
            sync.group = group
            setattr(module, name, sync)
        else:
            sync_batchnorm_cpu(child, group)
    return module


@dataclass
class Distributed:
    """Data-parallel training under ``torchrun`` (``WORLD_SIZE`` > 1): gloo on CPU, NCCL
    on GPU. ``net`` is the DDP-wrapped model; rank 0 alone writes checkpoints."""

    rank: int
    world: int
    net: Any = None
    started_here: bool = False

    @classmethod
    def from_environment(cls) -> Distributed | None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        return cls(rank=int(os.environ.get("RANK", "0")), world=world)

    def start(self, device: torch.device) -> torch.device:
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.started_here = True
        if device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return device

    def wrap(self, model: SegmentationModel, device: torch.device) -> None:
        from torch.nn.parallel import DistributedDataParallel

        if model.loss_module is not None:
            raise ValueError("train: the learning-loss module is not supported data parallel")
        # BatchNorm over the global batch: torch's SyncBatchNorm on GPU, ours on CPU (on
        # a process group of its own: DDP's gradient buckets use the default one).
        if device.type == "cuda":
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            module = sync_batchnorm_cpu(model, torch.distributed.new_group(backend="gloo"))
        self.net = DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )

    def batches(self, order: list[int], batch_size: int) -> list[list[int]]:
        """This rank's share of each global batch of ``order`` (the single-process
        batches); a last batch smaller than the number of ranks is dropped by all."""
        out = []
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            if len(batch) < self.world:
                continue
            out.append([int(i) for i in np.array_split(np.array(batch), self.world)[self.rank]])
        return out

    def barrier(self) -> None:
        torch.distributed.barrier()

    def stop(self) -> None:
        if self.started_here:
            torch.distributed.destroy_process_group()
