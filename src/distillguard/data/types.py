"""Plain containers for classifier data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    """What a model's inputs and outputs mean: feature columns, classes, input shape.

    ``feature_names`` name the model's numeric inputs. A table with categories or blanks
    also has ``encoding``: the JSON of a :class:`~distillguard.data.encoding.TableEncoder`
    fitted on the transfer inputs, which turns the raw columns (``raw_feature_names``)
    into those inputs; labelled texts have ``{"kind": "text", ...}``, the tokenizer that turns
    a text into the model's token-id row (:mod:`distillguard.data.text_roles`).
    """

    feature_names: list[str]
    classes: list
    input_shape: tuple[int, ...]
    encoding: dict[str, Any] | None = None

    @property
    def raw_feature_names(self) -> list[str]:
        """The columns of a raw row: the encoder's inputs, or the feature names of a numeric table."""
        if self.encoding is None:
            return list(self.feature_names)
        if self.encoding.get("kind") == "text":
            return [self.encoding["column"]]
        return [c["name"] for c in self.encoding["columns"]]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        value = {"feature_names": self.feature_names, "classes": self.classes, "input_shape": list(self.input_shape)}
        if self.encoding is not None:
            value["encoding"] = self.encoding
        return value

    @classmethod
    def from_dict(cls, value: dict) -> Schema:
        return cls(list(value["feature_names"]), list(value["classes"]), tuple(value["input_shape"]),
                   value.get("encoding"))
