"""Plain containers for classifier data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    """One role's records.

    Attributes:
        X: (n, d) float32 features, flat; ``Schema.input_shape`` says how to view them.
        y: (n,) int64 class indices into ``Schema.classes``; None for unlabeled transfer data.
        ids: (n,) int64 example ids (the 0-based row in the role's file).
    """

    X: np.ndarray
    y: np.ndarray | None
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, index: np.ndarray) -> Split:
        return Split(X=self.X[index], y=None if self.y is None else self.y[index], ids=self.ids[index])


@dataclass(frozen=True)
class Schema:
    """What a model's inputs and outputs mean: feature columns, classes, input shape."""

    feature_names: list[str]
    classes: list
    input_shape: tuple[int, ...]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        return {"feature_names": self.feature_names, "classes": self.classes, "input_shape": list(self.input_shape)}

    @classmethod
    def from_dict(cls, value: dict) -> Schema:
        return cls(list(value["feature_names"]), list(value["classes"]), tuple(value["input_shape"]))
