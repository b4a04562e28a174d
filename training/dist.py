"""Process-group setup for ``torchrun`` (nanoGPT's pattern): one process per device.

Without torchrun's environment the run is a single process. Under it, each process binds to
``cuda:LOCAL_RANK`` with NCCL, or uses gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .config import ConfigError

__all__ = ["DistContext", "cleanup", "gather_objects", "mean_over_ranks", "on_any_rank", "setup", "time_is_up"]


@dataclass(frozen=True)
class DistContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup(device: str = "auto") -> DistContext:
    """Joins the torchrun process group if there is one and picks this process's device."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device = cuda, but CUDA is not available")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if "RANK" not in os.environ:
        return DistContext(0, 0, 1, torch.device("cuda" if use_cuda else "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
    return DistContext(rank, local_rank, world_size, dev)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-item list without a process group)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def time_is_up(ctx: DistContext, elapsed: float, limit: float) -> bool:
    """Whether any rank has passed the limit, so that all ranks stop at the same step."""
    (up,) = on_any_rank(ctx, torch.tensor([elapsed > limit], device=ctx.device))
    return up


def on_any_rank(ctx: DistContext, flags: torch.Tensor) -> list[bool]:
    """Each boolean of ``flags``, true if it is true on any rank (one host sync, one collective),
    so that every rank takes the same decision."""
    flags = flags.float()
    if ctx.distributed:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [bool(v) for v in flags.tolist()]


def mean_over_ranks(ctx: DistContext, value: torch.Tensor) -> float:
    """The mean of a scalar tensor over the ranks."""
    if ctx.distributed:
        value = value.clone()
        dist.all_reduce(value)  # gloo has no AVG
        value /= ctx.world_size
    return float(value)
