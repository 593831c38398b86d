"""``[run]``: the run's name, seed, and how it saves and splits its work."""

from __future__ import annotations

from pydantic import Field

from distillguard.config.base import Section


class RunConfig(Section):
    name: str = Field("distillguard", min_length=1,
                      description="Run name; the default run folder is runs/NAME. Unset: the spec file's name without "
                                  "its suffix (purchases.toml: purchases).")
    seed: int = Field(0, ge=0, description="Seeds every random choice of the run.")
    checkpoint_seconds: float = Field(
        30.0, ge=0.0,
        description="Save resumable training state at most this often (0: every epoch). A killed run loses at "
                    "most this much training; the results do not depend on it.")
    shard_rows: int = Field(
        65_536, ge=1,
        description="Transfer records per soft-label shard: the label and distill stages hold one or two shards at "
                    "a time, and under torchrun the label shards are split among the ranks. The student shuffles "
                    "within a shard and visits the shards in random order, so once the transfer set spans several "
                    "shards its results depend on this; within one shard they do not.")
    batch_split: int | None = Field(
        None, ge=1,
        description="Compute each minibatch's gradient of the teacher and student in this many contiguous parts, "
                    "summed in order; unset: 1, or the number of processes under torchrun (one part per rank). "
                    "A single-process run with batch_split = 2 equals a 2-process torchrun run bit for bit.")
