"""Feature standardisation, fitted only on what the model in question may see.

The teacher's scaler is fitted on its training members; the student's on the transfer
inputs. A model never carries statistics of data it was not allowed to see, so the
deploy bundle holds no member statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Standardizer:
    """x ↦ (x − mean) / scale, with scale 1 for constant features."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Standardizer:
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
        scale[scale < 1e-12] = 1.0
        return cls(mean.astype(np.float32), scale.astype(np.float32))

    def transform(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.scale).astype(np.float32)

    def to_dict(self) -> dict:
        return {"kind": "standardize", "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, value: dict) -> Standardizer:
        return cls(np.asarray(value["mean"], dtype=np.float32), np.asarray(value["scale"], dtype=np.float32))
