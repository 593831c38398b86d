"""The deploy bundle as users load it: the student, its schema and preprocessing.

``load_bundle(path).predict_proba(X)`` takes raw feature rows in the data files' column
order (or a DataFrame with those columns) and returns (n, classes) probabilities. A
bundle of a mixed-type table takes the raw values (strings, blanks, booleans) and applies
the encoder fitted on the transfer set, stored as JSON in ``config.json``
(``schema.encoding``); an unseen category encodes as all zeros. A text classifier's bundle
takes a list of texts (and also holds ``hf/``, the same student as a plain Hugging Face folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from distillguard.config.deploy import AUDITED_CLASSIFIER_OUTPUT, DeployConfig
from distillguard.data.encoding import TableEncoder
from distillguard.errors import DataError
from distillguard.models.artifact import Classifier, load_classifier

#: A bundle written before release policies existed released, and was audited on, full probabilities.
_DEFAULT_RELEASE = {"output": "probabilities", "top_k": None, "decimals": None}


class Bundle:
    """A loaded deploy bundle (student only). Attributes end in ``_`` as in scikit-learn."""

    def __init__(self, classifier: Classifier, config: dict) -> None:
        self._clf = classifier
        self.classes_ = np.asarray(classifier.schema.classes)
        self.feature_names_ = classifier.schema.raw_feature_names
        self.config_ = config
        self.release_: dict[str, Any] = dict(config.get("release") or _DEFAULT_RELEASE)
        self.audited_output_: dict[str, Any] = dict(config.get("audited_output") or AUDITED_CLASSIFIER_OUTPUT)
        self.serving_: dict[str, Any] = {**DeployConfig().serving_limits(), **(config.get("serving") or {})}
        encoding = classifier.schema.encoding
        self._text = encoding is not None and encoding.get("kind") == "text"
        if self._text:  # labelled texts: the encoder is the tokenizer; the raw input is one text per row
            encoding = {"columns": [{"name": encoding["column"], "type": "text"}]}
        self._encoder = TableEncoder.from_dict(encoding) if encoding is not None and not self._text else None
        #: per raw feature: "numeric", "boolean" or "categorical" (numeric tables: all "numeric")
        self.feature_types_ = ({c["name"]: c["type"] for c in encoding["columns"]} if encoding is not None
                               else dict.fromkeys(self.feature_names_, "numeric"))

    def _encoded(self, X) -> np.ndarray:
        import pandas as pd

        if not hasattr(X, "columns"):
            if isinstance(X, dict):
                X = [X]
            if isinstance(X, list) and X and isinstance(X[0], dict):
                X = pd.DataFrame(X)
            else:
                rows = np.asarray(X, dtype=object)
                if rows.ndim != 2 or rows.shape[1] != len(self.feature_names_):
                    raise DataError(f"predict_proba: X has shape {rows.shape}; expected (n, {len(self.feature_names_)}) "
                                    f"raw values of {self.feature_names_[:5]}…")
                X = pd.DataFrame(rows, columns=self.feature_names_)
        return self._encoder.transform(X, path="predict_proba")

    def _token_rows(self, X) -> np.ndarray:
        from distillguard.data.text_roles import encode_with_schema

        if isinstance(X, str):
            X = [X]
        if hasattr(X, "columns"):
            X = X[self.feature_names_[0]].tolist()
        texts = list(X)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise DataError(f"predict_proba: row {bad[0]} is a {type(texts[bad[0]]).__name__}; expected a text (str)")
        return encode_with_schema(self._clf.schema, texts)

    def _matrix(self, X) -> np.ndarray:
        if self._text:
            return self._token_rows(X)
        if self._encoder is not None:
            return self._encoded(X)
        if hasattr(X, "columns"):  # a DataFrame: select the features by name, in order
            missing = [c for c in self.feature_names_ if c not in X.columns]
            if missing:
                raise DataError(f"predict_proba: missing feature columns {missing[:5]}")
            X = X[self.feature_names_].to_numpy(dtype=np.float32)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names_):
            raise DataError(f"predict_proba: X has shape {X.shape}; expected (n, {len(self.feature_names_)})")
        if not np.isfinite(X).all():
            raise DataError("predict_proba: X contains NaN or inf")
        return X

    def predict_proba(self, X) -> np.ndarray:
        """(n, classes) probabilities; rows sum to 1; columns follow ``classes_``."""
        return self._clf.predict_proba(self._matrix(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def predict_released(self, X) -> list:
        """One JSON-able prediction per row in the bundle's release form (what ``distillguard serve`` answers)."""
        return release_predictions(self.predict_proba(X), self.classes_.tolist(), self.release_)


def release_predictions(probs: np.ndarray, classes: list, release: dict[str, Any]) -> list:
    """Probabilities in a release form: a list per row aligned with ``classes``, ``[class, p]``
    pairs of the ``top_k`` most likely classes (ties in class order), or the class alone."""
    if release["output"] == "probabilities" and release.get("decimals") is None:
        return np.asarray(probs, dtype=np.float64).tolist()
    probs = np.asarray(probs, dtype=np.float64)
    if release["output"] == "label":
        return [classes[i] for i in np.argmax(probs, axis=1).tolist()]
    order = np.argsort(-probs, axis=1, kind="stable")  # ranked before rounding: the true top k
    if release.get("decimals") is not None:
        probs = np.round(probs, int(release["decimals"]))
    if release["output"] == "top_k":
        order = order[:, : int(release["top_k"])]
        return [[[classes[j], float(row[j])] for j in idx] for row, idx in zip(probs, order.tolist(), strict=True)]
    return probs.tolist()


def load_bundle(path: str | Path) -> Bundle:
    """Load ``runs/NAME/deploy`` (or a copy of it); weights via safetensors only."""
    clf, config = load_classifier(Path(path))
    return Bundle(clf, config)
