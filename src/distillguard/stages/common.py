"""Mechanics every stage shares: fingerprint, skip when fresh, write atomically, record."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from distillguard import progress
from distillguard.checkpoints import CheckpointStore
from distillguard.config import Spec
from distillguard.runs import RunDir, sha256_json


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
    if run.is_fresh(name, fingerprint):
        progress.log(f"[dim]{name}: up to date, skipped[/dim]")
        return False
    started = time.time()
    from distillguard.runs import staged_dir

    if checkpoints is not None and checkpoints.open(fingerprint):
        progress.log(f"{name}: resuming from checkpoints in {checkpoints.root}")

    with staged_dir(run / output) as folder:
        extra = build(folder)
    run.record_stage(
        name, fingerprint=fingerprint, params=params, inputs=inputs,
        outputs=[run / output], started=started, extra=extra,
    )
    if checkpoints is not None:
        checkpoints.clear()
    progress.log(f"{name}: done in {time.time() - started:.1f}s")
    return True
