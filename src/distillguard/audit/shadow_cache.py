"""Reuse of shadow teachers across runs that share them (the tuner's main saving).

Shadow teachers depend only on the audit pool, the shadows' membership and canaries,
the teacher recipe and the records they are evaluated on, not on anything downstream of
the teacher (release knobs, student recipe). ``distillguard tune`` evaluates many
candidates that differ only downstream, so it opens a cache for the search: the first
candidate trains the shadow teachers, the others load their outputs. The key hashes
every input, so a candidate that changes the teacher trains its own. Training is
deterministic, so a cached result is the one a fresh training would give.

Cached outputs reveal membership like the shadows themselves: the folder is the
tuner's owner-only private folder, removed with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save

from distillguard.runs import atomic_write_bytes, sha256_json

_folder: ContextVar[Path | None] = ContextVar("shadow_teacher_cache", default=None)


@contextmanager
def shadow_teacher_cache(folder: Path) -> Iterator[None]:
    """Within the block, shadow teachers are looked up in and saved to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    token = _folder.set(folder)
    try:
        yield
    finally:
        _folder.reset(token)


def cache_key(*, arrays: dict[str, np.ndarray | None], params: dict[str, Any]) -> str:
    """sha256 over the arrays' dtypes, shapes and bytes and the JSON of ``params``."""
    digest = hashlib.sha256(sha256_json(params).encode())
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
