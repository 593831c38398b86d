"""Data-parallel runs under ``torchrun``: who this process is, and how the ranks meet.

One code path serves one process and many: outside ``torchrun`` the world has one rank
and every helper here is a no-op. Under ``torchrun --nproc_per_node=N`` (or across nodes)
the process group is started from the environment torchrun sets (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``...), with gloo on CPU and NCCL on CUDA.

The division of labour (DESIGN.md's run folder is shared, so the ranks must see one
filesystem): rank 0 owns the manifest, spec.toml, the checkpoints and the report; every
rank trains its part of every minibatch (DistributedDataParallel; the parts' gradients
are summed) and labels its own shards of the transfer set; stages start and end on a barrier, so every rank reads the same
manifest when it decides whether a stage is fresh.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, shard: int) -> bool:
        """Shards go round-robin: rank r writes shards r, r + size, r + 2·size, …"""
        return shard % self.size == self.rank


def world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_environment(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment (once per process)."""
    if launched_by_torchrun() and dist.is_available() and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # On GPUs, NCCL for CUDA tensors and gloo for the CPU ones (DP-SGD's clipped sums, the
        # loss totals and gathered objects live on the CPU, which NCCL cannot reduce).
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return world()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` in one process)."""
    if world().size == 1:
        return [value]
    box: list[Any] = [None] * world().size
    dist.all_gather_object(box, value)
    return box


def all_sum(values: list[float]) -> list[float]:
    """Elementwise sum of ``values`` over the ranks, in float64."""
    if world().size == 1:
        return list(values)
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return total.tolist()


_batch_split: contextvars.ContextVar[int | None] = contextvars.ContextVar("batch_split", default=None)


@contextmanager
def splitting_batches(parts: int | None) -> Iterator[None]:
    """Compute training gradients in ``parts`` minibatch parts while the block runs (``[run] batch_split``)."""
    if parts is not None and world().size > 1 and parts != world().size:
        from distillguard.errors import ConfigError

        raise ConfigError(f"[run].batch_split = {parts}, but torchrun started {world().size} processes; each rank "
                          f"computes one part of every minibatch, so set batch_split = {world().size} or leave it unset")
    token = _batch_split.set(parts)
    try:
        yield
    finally:
        _batch_split.reset(token)


def batch_parts() -> int:
    """Parts of every minibatch's gradient: ``[run] batch_split``, else one per rank."""
    return _batch_split.get() or world().size


def sum_gradients_hook(state, bucket):  # noqa: ANN001, ANN201 (DDP inspects the real annotations; ours are strings)
    """DDP comm hook: the sum of the ranks' gradients (DDP's default divides by the world size first).

    Each rank's loss is already weighted by its share of the minibatch, so the sum is the
    minibatch's gradient; with two ranks it is one float addition, the very one a single
    process accumulating the same two parts performs.
    """
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


_shared_output: contextvars.ContextVar[Path | None] = contextvars.ContextVar("shared_output", default=None)


@contextmanager
def shared_output(folder: Path) -> Iterator[None]:
    """Where every rank writes its shards while a stage builds (rank 0's staged folder)."""
    token = _shared_output.set(folder)
    try:
        yield
    finally:
        _shared_output.reset(token)


def shard_folder(own_folder: Path) -> Path:
    """The folder a rank writes its shards to: the shared staged output under torchrun.

    Ranks other than 0 build into a private scratch folder (nothing they write there is
    kept); their shards must land in rank 0's, which it then records and publishes.
    """
    return _shared_output.get() or own_folder
