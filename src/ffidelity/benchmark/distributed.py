"""Scale-out: shard the evaluated inputs across processes (one per GPU, or CPU workers) and gather the results.

The engine's random draws are keyed by each input's global index, so a sharded evaluation gives exactly the
numbers of a single process. ``launch`` starts ``devices`` local processes (gloo on CPU, nccl on GPUs); under
``torchrun`` or SLURM (``WORLD_SIZE`` set in the environment) it joins the existing job instead, so multi-node
runs use the same command.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ffidelity.metrics.result import FidelityResult


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Waits for every process of the group; a no-op outside a process group."""
    if world()[1] > 1:
        dist.barrier()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(local_rank: int, world_size: int, port: int, backend: str, fn: Callable[..., Any], args: tuple) -> None:
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=local_rank,
                            world_size=world_size)
    try:
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        fn(*args)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], devices: int, *args: Any) -> None:
    """Runs ``fn(*args)`` on ``devices`` processes joined in one process group (or joins torchrun's).

    ``fn`` must be importable (a module-level function): processes are spawned, not forked.
    """
    if devices < 1:
        raise ValueError(f"devices must be >= 1, got {devices}")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():  # torchrun / SLURM started us
        dist.init_process_group(backend)
        try:
            fn(*args)
        finally:
            dist.destroy_process_group()
        return
    if devices == 1:
        fn(*args)
        return
    import torch.multiprocessing as mp

    mp.start_processes(_worker, args=(devices, _free_port(), backend, fn, args), nprocs=devices, join=True,
                       start_method="spawn")


def evaluate_sharded(metric: Any, model: nn.Module, inputs: torch.Tensor, targets: Any,
                     attributions: torch.Tensor) -> FidelityResult:
    """``metric.evaluate`` over this process's contiguous shard, gathered on every process.

    Outside a process group it is exactly ``metric.evaluate``.
    """
    rank, size = world()
    if size == 1:
        return metric.evaluate(model, inputs, targets, attributions)
    n = inputs.shape[0]
    bounds = np.linspace(0, n, size + 1).round().astype(int)
    lo, hi = int(bounds[rank]), int(bounds[rank + 1])
    part = None
    if hi > lo:
        t = None if targets is None else torch.as_tensor(targets)[lo:hi]
        part = metric.evaluate(model, inputs[lo:hi], t, attributions[lo:hi], index_offset=lo)
    parts: list[FidelityResult | None] = [None] * size
    dist.all_gather_object(parts, part)
    done = [p for p in parts if p is not None]
    first = done[0]
    return FidelityResult(
        method=first.method, sparsities=first.sparsities,
        base_scores=np.concatenate([p.base_scores for p in done]),
        per_sample_plus=np.concatenate([p.per_sample_plus for p in done]),
        per_sample_minus=np.concatenate([p.per_sample_minus for p in done]),
        params={**first.params, "world_size": size},
    )
