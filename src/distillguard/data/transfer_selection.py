"""Transfer-side defenses: which public records the teacher is asked to label.

A student leaks a member when the transfer set holds points near it on which the
teacher's memorized label differs from what the population would suggest (Jagielski et
al. 2023). Choosing the queries is therefore a defense knob, applied on the teacher's
side of the wall (the label stage), before any soft label is released. Every rule
returns the *indices* of the records kept, sorted, so a run can record exactly what the
student was given.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from distillguard.errors import ConfigError


def random_subset(n: int, *, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` of ``range(n)`` uniformly at random (fewer queries, less released)."""
    if not 1 <= size:
        raise ConfigError(f"transfer subset size must be >= 1, got {size}")
    if size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size, replace=False))


def lowest_entropy(teacher_logits: np.ndarray, *, fraction: float) -> np.ndarray:
    """The ``fraction`` of records whose teacher prediction has the lowest entropy.

    Distillation for Membership Privacy (Shejwalkar & Houmansadr, AAAI 2021, Sec. 4.2)
    distills on low-entropy reference records: the teacher is confident there because
    the population agrees, so its label says little about any single member.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"low-entropy fraction must be in (0, 1], got {fraction}")
    z = np.asarray(teacher_logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    entropy = -(np.exp(logp) * logp).sum(axis=1)
    keep = max(1, int(round(fraction * len(z))))
    return np.sort(np.argsort(entropy, kind="stable")[:keep])


def far_from_private(transfer_X: np.ndarray, private_X: np.ndarray, *, drop_fraction: float) -> np.ndarray:
    """Drop the ``drop_fraction`` of transfer records nearest to any private record.

    Distance is Euclidean on features standardized by the private data's statistics,
    the scale the leak guard uses. Unlike the leak guard (which refuses copies), this
    removes legitimate public points that sit close enough to a member for the teacher's
    memorized label to carry over.
    """
    if not 0 <= drop_fraction < 1:
        raise ConfigError(f"far_from_private drop fraction must be in [0, 1), got {drop_fraction}")
    n = len(transfer_X)
    n_drop = int(round(drop_fraction * n))
    if n_drop == 0:
        return np.arange(n)
    private_X = np.asarray(private_X, dtype=np.float64)
    mean, std = private_X.mean(axis=0), private_X.std(axis=0)
    std[std == 0] = 1.0
    index = NearestNeighbors(n_neighbors=1).fit((private_X - mean) / std)
    distance = index.kneighbors((np.asarray(transfer_X, dtype=np.float64) - mean) / std)[0][:, 0]
    return np.sort(np.argsort(-distance, kind="stable")[: n - n_drop])
