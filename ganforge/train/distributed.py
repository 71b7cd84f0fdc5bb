"""torch.distributed set-up for runs started by ``torchrun`` (one process per GPU or CPU slot).

Without torchrun's environment variables everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands: rank among ``world`` processes, and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_from_env(device_kind: str) -> ProcessGroup:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return ProcessGroup()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return ProcessGroup(rank=rank, world=world, local_rank=local_rank)


def shutdown(group: ProcessGroup) -> None:
    """Leave the process group (called once training ends)."""
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def broadcast_parameters(modules: Iterable[torch.nn.Module], group: ProcessGroup) -> None:
    """Give every process rank 0's weights and buffers."""
    if not group.distributed:
        return
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: list[torch.nn.Parameter], group: ProcessGroup) -> None:
    """All-reduce and average gradients over processes, as one flat buffer.

    Data-parallel training as DistributedDataParallel does it, but per optimiser step: GAN
    recipes freeze one network while another learns, which DDP's per-backward hooks cannot
    follow without ``find_unused_parameters`` and its costs.
    """
    if not group.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= group.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def gather_objects(obj: Any, group: ProcessGroup) -> list[Any]:
    """Every process's ``obj``, in rank order (used for per-process RNG state)."""
    if not group.distributed:
        return [obj]
    out: list[Any] = [None] * group.world
    dist.all_gather_object(out, obj)
    return out


def any_true(flag: bool, group: ProcessGroup, device: torch.device) -> bool:
    """True when ``flag`` is true on any process."""
    if not group.distributed:
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
