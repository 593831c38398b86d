"""Shadow pipelines as Ray tasks: ``[audit] backend = "ray"``.

Shadows are independent given their index, so one task replays the whole pipeline
(teacher, release, student) for a chunk of ``ray_shadows_per_task`` shadow ids, batched
as the local backend batches all of them, and the driver stacks the chunks' logits in
shadow order. Training a chunk gives each of its shadows the logits it gets in one call
for all S (``fit_many`` trains every stacked model as ``fit`` would), so the arrays, and
scores.parquet, are the local backend's (tests/audit/test_ray_backend.py). The inputs
every task reads go to the object store once.

A finished chunk's logits are checkpointed on the driver, so a killed audit resumes
with the chunks still missing. Ray is an optional dependency, imported only here and
only when the spec asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np
import torch

from distillguard.audit.pipelines import Logits, ShadowJob, replay_shadows
from distillguard.checkpoints import CheckpointStore
from distillguard.errors import ConfigError

RAY_MISSING = '[audit].backend = "ray" needs Ray: pip install "distillguard[ray]"'


def require_ray() -> ModuleType:
    """The ``ray`` module, or the one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


@contextmanager
def ray_session(address: str | None) -> Iterator[ModuleType]:
    """Use the Ray instance this process is connected to, or connect for the block.

    A caller that already ran ``ray.init`` (a notebook, a test) keeps its instance. Else
    ``address`` is passed to ``ray.init`` (None starts a local instance), and the
    connection is shut down afterwards, which also stops an instance started here.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    local = {"include_dashboard": False} if address is None else {}
    try:
        ray.init(address=address, log_to_driver=False, **local)
    except ConnectionError as error:
        raise ConfigError(f"[audit].ray_address = {address!r}: cannot connect to a Ray cluster ({error})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def shadow_chunks(n_shadows: int, per_task: int) -> list[list[int]]:
    """Consecutive chunks of at most ``per_task`` shadow ids covering range(n_shadows)."""
    return [list(range(a, min(a + per_task, n_shadows))) for a in range(0, n_shadows, per_task)]


def _replay_chunk(job: ShadowJob, shadow_ids: list[int], teacher_out: Logits | None,
                  threads: int) -> tuple[Logits, Logits]:
    """One task: the shadows ``shadow_ids``, on as many threads as the task holds CPUs."""
    torch.set_num_threads(threads)
    return replay_shadows(job, shadow_ids, teacher_out=teacher_out)


def _chunk_slot(shadow_ids: list[int]) -> str:
    return f"ray-shadows{shadow_ids[0]}-{shadow_ids[-1]}"


def _load_chunk(checkpoints: CheckpointStore | None, shadow_ids: list[int]) -> tuple[Logits, Logits] | None:
    saved = checkpoints.slot(_chunk_slot(shadow_ids)).load() if checkpoints is not None else None
    if saved is None:
        return None
    return tuple({k: v.numpy() for k, v in saved[part].items()} for part in ("teacher", "student"))


def _save_chunk(checkpoints: CheckpointStore | None, shadow_ids: list[int], result: tuple[Logits, Logits]) -> None:
    if checkpoints is not None:
        state = {part: {k: torch.from_numpy(v) for k, v in out.items()} for part, out in zip(("teacher", "student"), result)}
        checkpoints.slot(_chunk_slot(shadow_ids)).save(state, point="done")


def _owned(result: tuple[Logits, Logits]) -> tuple[Logits, Logits]:
    """Copies of a task's arrays: Ray's are read-only views of the object store, gone at shutdown."""
    return tuple({k: np.array(v) for k, v in out.items()} for out in result)


def _stack(parts: list[Logits]) -> Logits:
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def train_shadows_on_ray(job: ShadowJob, *, teacher_out: Logits | None = None,
                         checkpoints: CheckpointStore | None = None,
                         on_chunk: Callable[[int], None] | None = None) -> tuple[Logits, Logits]:
    """All S shadow pipelines, one Ray task per chunk; (teacher logits, student logits), (S, n, C) each.

    Args:
        teacher_out: all S teachers' logits when already known (the tuner's cache); tasks
            then train only the students.
        on_chunk: called with a chunk's size as each chunk finishes (progress bars).
    """
    cfg = job.spec.audit
    chunks = shadow_chunks(job.n_shadows, cfg.ray_shadows_per_task)
    results = [_load_chunk(checkpoints, ids) for ids in chunks]
    for ids, result in zip(chunks, results):
        if result is not None and on_chunk is not None:
            on_chunk(len(ids))
    todo = [i for i, result in enumerate(results) if result is None]
    if todo:
        with ray_session(cfg.ray_address) as ray:
            task = ray.remote(num_cpus=cfg.ray_cpus_per_task)(_replay_chunk)
            job_ref = ray.put(job)
            pending = {task.remote(job_ref, chunks[i], None if teacher_out is None else
                                   {k: v[chunks[i]] for k, v in teacher_out.items()}, cfg.ray_cpus_per_task): i
                       for i in todo}
            try:
                while pending:
                    (ref,), _ = ray.wait(list(pending), num_returns=1)
                    i = pending.pop(ref)
                    results[i] = _owned(ray.get(ref))
                    _save_chunk(checkpoints, chunks[i], results[i])
                    if on_chunk is not None:
                        on_chunk(len(chunks[i]))
            finally:
                for ref in pending:  # a failed chunk (or Ctrl-C) stops the others on a shared cluster too
                    ray.cancel(ref)
    return _stack([r[0] for r in results]), _stack([r[1] for r in results])
