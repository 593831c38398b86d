"""Seeds derived by name, so each random choice has its own stream.

Adding a new random step never shifts the seeds of the existing ones, which keeps old
runs reproducible as the pipeline grows.
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *names: object) -> int:
    """A 31-bit seed from the run seed and a path of names, e.g. ``(0, "shadow", 3)``."""
    text = "/".join([str(seed), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
