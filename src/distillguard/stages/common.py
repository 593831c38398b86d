"""Mechanics every stage shares: fingerprint, skip when fresh, write atomically, record."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from distillguard import distributed, progress
from distillguard.checkpoints import CheckpointStore
from distillguard.config import Spec
from distillguard.runs import RunDir, partial_dir, sha256_json, staged_dir


def checkpoint_store(spec: Spec, run: RunDir, stage: str) -> CheckpointStore:
    """The stage's resumable-state folder, ``RUN/.checkpoints/STAGE`` (owner-only)."""
    return CheckpointStore(run / ".checkpoints" / stage, stage=stage, every_seconds=spec.run.checkpoint_seconds)


def execute_stage(
    run: RunDir,
    name: str,
    *,
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
    output: str,
    build: Callable[[Path], Mapping[str, Any] | None],
    checkpoints: CheckpointStore | None = None,
) -> bool:
    """Run ``build`` into a staged copy of ``run/output`` unless the stage is fresh.

    ``inputs`` maps a name to the sha256 of what the stage reads; together with
    ``params`` it forms the fingerprint. ``build`` gets an empty folder to fill and may
    return extra fields for the manifest record. Returns True when the stage ran.
    ``checkpoints``, the folder where ``build``'s training loops keep resumable state,
    is kept across an interrupted run of the same fingerprint and removed on success.
    """
    fingerprint = sha256_json({"params": params, "inputs": inputs})
    distributed.barrier()  # every rank reads the manifest rank 0 finished writing
    if run.is_fresh(name, fingerprint):
        progress.log(f"[dim]{name}: up to date, skipped[/dim]")
        return False
    started = time.time()
    here = distributed.world()
    if here.is_main and checkpoints is not None and checkpoints.open(fingerprint):
        progress.log(f"{name}: resuming from checkpoints in {checkpoints.root}")

    if here.size == 1:
        with staged_dir(run / output) as folder:
            extra = build(folder)
    else:
        extra = _build_on_every_rank(run / output, build, main=here.is_main)
    if here.is_main:
        run.record_stage(
            name, fingerprint=fingerprint, params=params, inputs=inputs,
            outputs=[run / output], started=started, extra=extra,
        )
        if checkpoints is not None:
            checkpoints.clear()
    distributed.barrier()
    progress.log(f"{name}: done in {time.time() - started:.1f}s")
    return True


def _build_on_every_rank(final: Path, build: Callable[[Path], Mapping[str, Any] | None], *, main: bool):
    """Under torchrun: rank 0 builds into the staged output, the others into scratch.

    Every rank runs ``build`` (its training steps are collective); only rank 0's files
    are kept, plus the shards other ranks write to :func:`distributed.shard_folder`.
    Rank 0 publishes the folder only after every rank has finished its part.
    """
    partial = partial_dir(final)
    if main:
        with staged_dir(final) as folder:
            distributed.barrier()  # the staged folder exists: the others may write shards into it
            with distributed.shared_output(folder):
                extra = build(folder)
            distributed.barrier()  # every rank's shards are in
        return extra
    distributed.barrier()
    with tempfile.TemporaryDirectory(prefix=f".{final.name}.rank") as scratch, distributed.shared_output(partial):
        build(Path(scratch))
    distributed.barrier()
    return None
