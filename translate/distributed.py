"""Data-parallel training under torchrun: process group set-up and gradient averaging.

`torchrun --nproc_per_node N -m translate train ...` starts N processes; each trains on its slice of every
global batch (see data.UnpairedBatches) and gradients are averaged across processes before each optimizer
step, which is what DistributedDataParallel computes. Averaging explicitly keeps it correct for the GAN
pattern DDP handles badly: discriminators frozen during the generator update, nets called several times per
step, and double backward for gradient penalties.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init(device_type: str) -> World:
    """Join the process group torchrun describes in the environment (nccl on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def average_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """All-reduce the gradients of `params` (one flat buffer, one collective) and divide by the world size."""
    grads = [p.grad for p in params if p.grad is not None]
    if not world.distributed or not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
