"""A classifier with what it needs to read raw rows: schema and fitted preprocessing.

Teacher, student, shadow models and the deploy bundle all use this one form, so a
model folder always answers raw feature rows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema
from distillguard.errors import ArtifactError
from distillguard.models.classifiers import load_model, save_model
from distillguard.models.inference import predict_logits


@dataclass
class Classifier:
    """A trained model plus its schema and preprocessing."""

    model: nn.Module
    arch: dict[str, Any]
    schema: Schema
    scaler: Standardizer

    def logits(self, X: np.ndarray) -> np.ndarray:
        """(n, C) float64 logits for raw (n, d) feature rows."""
        with torch.no_grad():
            inputs = torch.from_numpy(self.scaler.transform(np.asarray(X, dtype=np.float32)))
            return predict_logits(self.model, inputs).double().numpy()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.logits(X)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)


def save_classifier(folder: Path, clf: Classifier, *, extra: dict[str, Any] | None = None) -> None:
    save_model(clf.model, folder, arch=clf.arch, extra={
        "schema": clf.schema.to_dict(), "preprocessing": clf.scaler.to_dict(), **(extra or {}),
    })


def load_classifier(folder: Path) -> tuple[Classifier, dict[str, Any]]:
    model, config = load_model(folder)
    try:
        schema = Schema.from_dict(config["schema"])
        scaler = Standardizer.from_dict(config["preprocessing"])
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(f"{folder / 'config.json'}: missing schema or preprocessing ({error})") from None
    if scaler.mean.shape != (schema.n_features,):
        raise ArtifactError(
            f"{folder / 'config.json'}: preprocessing has {scaler.mean.shape[0]} features, schema {schema.n_features}"
        )
    return Classifier(model, config["architecture"], schema, scaler), config
