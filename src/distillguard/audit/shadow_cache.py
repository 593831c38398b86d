"""Reuse of shadow teachers across audits that share them (the tuner's main saving).

Shadow teachers depend only on the audit pool, the shadows' membership and canaries,
the teacher recipe and the records they are evaluated on, not on anything downstream of
the teacher (release knobs, student recipe). Two kinds of audit reuse them:

* ``distillguard tune`` evaluates many candidates that differ only downstream, so it
  opens a cache for the whole search (its owner-only private folder, removed with it);
* every audit of a run opens ``RUN/teacher/shadow-teachers/`` (:func:`run_cache`), so a
  re-audit of the same run (``distillguard run`` again with other student, release or
  attack knobs, or ``distillguard audit``) loads its shadow teachers instead of training
  them. The folder lives beside the teacher, owner-only, is never exported and is
  destroyed with the teacher (``--destroy-teacher``); a retrained teacher replaces the
  folder, and the cache with it.

The key is content-addressed: it hashes every input array and parameter the shadow
teachers depend on, plus :data:`CODE_VERSION` and the torch version (another rounding),
so an audit that changes any of them trains its own. Training is deterministic, so a
cached result is the one a fresh training would give.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save

from distillguard.runs import atomic_write_bytes, sha256_json

_folder: ContextVar[Path | None] = ContextVar("shadow_teacher_cache", default=None)

# Bump when the shadow teachers' training changes its numbers (the cache key includes it).
CODE_VERSION = 2
RUN_CACHE = "shadow-teachers"


@contextmanager
def shadow_teacher_cache(folder: Path) -> Iterator[None]:
    """Within the block, shadow teachers are looked up in and saved to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    token = _folder.set(folder)
    try:
        yield
    finally:
        _folder.reset(token)


@contextmanager
def run_cache(teacher_dir: Path) -> Iterator[None]:
    """The run's own cache, ``teacher_dir/shadow-teachers`` (owner-only), unless one is open.

    An outer cache (the tuner's, shared by all its candidates) takes precedence.
    """
    if _folder.get() is not None:
        yield
        return
    folder = teacher_dir / RUN_CACHE
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    with shadow_teacher_cache(folder):
        yield


def cache_key(*, arrays: dict[str, np.ndarray | None], params: dict[str, Any]) -> str:
    """sha256 over the arrays' dtypes, shapes and bytes and the JSON of ``params``."""
    versions = {"code": CODE_VERSION, "torch": torch.__version__.split("+")[0]}
    digest = hashlib.sha256(sha256_json({**params, "versions": versions}).encode())
    for name in sorted(arrays):
        a = arrays[name]
        digest.update(name.encode())
        if a is not None:
            a = np.ascontiguousarray(a)
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(a.tobytes())
    return digest.hexdigest()


def load(key: str) -> dict[str, np.ndarray] | None:
    folder = _folder.get()
    if folder is None or not (folder / f"{key}.safetensors").is_file():
        return None
    return load_file(str(folder / f"{key}.safetensors"))


def store(key: str, outputs: dict[str, np.ndarray]) -> None:
    folder = _folder.get()
    if folder is not None:
        atomic_write_bytes(folder / f"{key}.safetensors", save({k: np.ascontiguousarray(v) for k, v in outputs.items()}))
