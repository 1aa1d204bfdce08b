"""Batch work over a folder of any size, split across the processes torchrun starts (the same process group
as the paper protocol, experiments.distributed: nccl on GPUs, gloo on CPUs). Rank r takes every
world-th file of the sorted list from r on, a deterministic split that needs no coordination; each rank
writes its own outputs; rank 0 merges after a barrier. Without torchrun everything runs in one process."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def process_group(args: argparse.Namespace) -> Iterator:
    """Join torchrun's process group (a no-op without it) and point `args.device` at this rank's device;
    yields the experiments.distributed context and leaves the group at the end."""
    import torch.distributed as dist

    from core.backbone import resolve_device
    from experiments.distributed import setup_distributed

    ctx = setup_distributed(resolve_device(args.device))
    if ctx.enabled:
        args.device = str(ctx.device)
    try:
        yield ctx
    finally:
        if ctx.initialised_here:
            dist.destroy_process_group()


def shard(items: Sequence[T], ctx) -> list[T]:  # type: ignore[no-untyped-def]
    """This rank's share of `items` (in their order)."""
    return list(items[ctx.rank :: ctx.world_size])


def barrier(ctx) -> None:  # type: ignore[no-untyped-def]
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def total(value: int, ctx) -> int:  # type: ignore[no-untyped-def]
    """The sum of `value` over the ranks."""
    if not ctx.enabled:
        return value
    import torch

    from experiments.distributed import all_sum

    return int(all_sum(torch.tensor([value], dtype=torch.int64), ctx).item())
