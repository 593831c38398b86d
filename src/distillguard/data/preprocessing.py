"""Feature standardisation, fitted only on what the model in question may see.

The teacher's scaler is fitted on its training members; the student's on the transfer
inputs. A model never carries statistics of data it was not allowed to see, so the
deploy bundle holds no member statistics.

Integer matrices are token ids of labelled texts (:mod:`distillguard.data.text_roles`;
every other loader gives float32): they pass through unscaled (mean 0, scale 1), since an
id is a vocabulary index, not a quantity, and that also keeps member statistics out of a
text model's folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardizer:
    """x ↦ (x − mean) / scale, with scale 1 for constant features."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        if np.issubdtype(np.asarray(X).dtype, np.integer):
            return cls.identity(np.asarray(X).shape[1])
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
        scale[scale < 1e-12] = 1.0
        return cls(mean.astype(np.float32), scale.astype(np.float32))

    @classmethod
    def fit_blocks(cls, blocks: Iterable[np.ndarray]) -> Standardizer:
        """:meth:`fit` on the concatenation of ``blocks``, seeing one block at a time.

        Per-block means and squared deviations are merged exactly in float64 (Chan, Golub &
        LeVeque 1979); one block gives :meth:`fit`'s result bit for bit.
        """
        count, mean, m2, first = 0, None, None, None
        for X in blocks:
            if np.issubdtype(np.asarray(X).dtype, np.integer):
                return cls.identity(np.asarray(X).shape[1])
            if not len(X):
                continue
            n_b = len(X)
            mean_b = X.mean(axis=0, dtype=np.float64)
            m2_b = ((X - mean_b) ** 2).sum(axis=0, dtype=np.float64)
            if count == 0:
                count, mean, m2, first = n_b, mean_b, m2_b, X
                continue
            first = None
            delta = mean_b - mean
            merged = count + n_b
            mean = mean + delta * (n_b / merged)
            m2 = m2 + m2_b + delta ** 2 * (count * n_b / merged)
            count = merged
        if count == 0:
            raise ValueError("no rows to fit a scaler on")
        if first is not None:
            return cls.fit(first)
        scale = np.sqrt(m2 / count)
        scale[scale < 1e-12] = 1.0
        return cls(mean.astype(np.float32), scale.astype(np.float32))

    @classmethod
    def identity(cls, n_features: int) -> Standardizer:
        """The scaler that changes nothing (token ids)."""
        return cls(np.zeros(n_features, dtype=np.float32), np.ones(n_features, dtype=np.float32))

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.scale).astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": "standardize", "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, value: dict) -> Standardizer:
        return cls(np.asarray(value["mean"], dtype=np.float32), np.asarray(value["scale"], dtype=np.float32))
