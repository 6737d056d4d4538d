"""torchrun / DDP setup: one process per GPU (or per CPU worker with gloo)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed() -> DistributedContext:
    """Reads the variables torchrun sets; a plain `python -m training` is a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world_size == 1:
        return DistributedContext(device=torch.device("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    return DistributedContext(rank=dist.get_rank(), world_size=world_size, device=device)


def broadcast_float(value: float, context: DistributedContext) -> float:
    """The main process's value, on every process (for decisions all must take alike)."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def teardown_distributed(context: DistributedContext) -> None:
    if context.enabled:
        dist.destroy_process_group()
