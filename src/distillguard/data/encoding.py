"""Raw mixed-type columns to numbers: imputation and one-hot encoding, stored as JSON.

A real table has numeric columns with blanks, string categories and booleans. The
encoder is fitted on the public side only (the transfer inputs), with scikit-learn's
``SimpleImputer`` and ``OneHotEncoder``; their learned parameters are kept as plain JSON
(never a pickle) and applied by :meth:`TableEncoder.transform`, here and in the deploy
bundle. A category that only the private data hold is therefore never written to a
model folder: at prediction time it is an unknown category, encoded as all zeros (the
rule of ``OneHotEncoder(handle_unknown="ignore")``).

The JSON form, ``{"kind": "table", "columns": [...]}``, one entry per raw column in order:

- ``{"name": N, "type": "numeric", "fill": median}``: blanks become the median;
- ``{"name": N, "type": "boolean", "fill": 0 | 1}``: true/false (also yes/no, 1/0), blanks the mode;
- ``{"name": N, "type": "categorical", "categories": [...]}``: one output per category
  (strings; a blank is the category ``""`` when the transfer set has blanks).

Scaling is left to the model's own standardizer, as for numeric tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.errors import DataError

MAX_CATEGORIES = 100  # most frequent categories per column; the rest encode as unknown
_TRUE = {"true", "yes", "y", "t", "1"}
_FALSE = {"false", "no", "n", "f", "0"}


def needs_encoding(features: pd.DataFrame) -> bool:
    """True when a table has a non-numeric column or a blank: numeric tables keep the plain path."""
    for column in features.columns:
        values = features[column]
        if values.isna().any():
            return True
        if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            return True
    return False


def _column_type(values: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_numeric_dtype(values):
        return "numeric"
    seen = {str(v).strip().lower() for v in values.dropna().unique()}
    if seen and seen <= (_TRUE | _FALSE) and len(seen) <= 2 and not seen <= {"0", "1"}:
        return "boolean"
    numeric = pd.to_numeric(values.dropna(), errors="coerce")
    if len(numeric) and numeric.notna().all():
        return "numeric"
    return "categorical"


def _as_bool(values: pd.Series) -> pd.Series:
    """1.0 / 0.0 / NaN; anything else is NaN (reported by the caller)."""
    def one(v: object) -> float:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return np.nan
        text = str(v).strip().lower()
        return 1.0 if text in _TRUE else 0.0 if text in _FALSE else np.nan
    return values.map(one).astype(np.float64)


def _as_category(values: pd.Series) -> np.ndarray:
    """Strings, with blanks as ``""``, so categories are JSON strings whatever the file's types."""
    return np.asarray(["" if pd.isna(v) else str(v) for v in values.tolist()], dtype=object)


@dataclass(frozen=True)
class TableEncoder:
    """Fitted per-column encodings of a raw table (see the module docstring for the JSON)."""

    columns: list[dict]

    @property
    def raw_columns(self) -> list[str]:
        return [c["name"] for c in self.columns]

    @property
    def output_names(self) -> list[str]:
        names = []
        for column in self.columns:
            if column["type"] == "categorical":
                names += [f"{column['name']}={category}" for category in column["categories"]]
            else:
                names.append(column["name"])
        return names

    @classmethod
    def fit(cls, features: pd.DataFrame, *, max_categories: int = MAX_CATEGORIES) -> TableEncoder:
        """Fit on the public rows ``features`` (raw columns, no label)."""
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import OneHotEncoder

        columns = []
        for name in features.columns:
            values, kind = features[name], _column_type(features[name])
            if kind == "categorical":
                encoder = OneHotEncoder(handle_unknown="ignore", max_categories=None)
                codes = _as_category(values)
                counts = pd.Series(codes).value_counts(sort=True)
                kept = sorted(counts.index[:max_categories].tolist())
                encoder.fit(np.asarray(kept, dtype=object).reshape(-1, 1))
                columns.append({"name": str(name), "type": "categorical",
                                "categories": [str(c) for c in encoder.categories_[0].tolist()]})
                continue
            numbers = _as_bool(values) if kind == "boolean" else pd.to_numeric(values, errors="coerce")
            numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True).reshape(-1, 1)
            numbers[~(np.abs(numbers) <= 3e38)] = np.nan  # a fill is a plain number; transform rejects the rest
            if np.isnan(numbers).all():
                fill = 0.0
            else:
                strategy = "most_frequent" if kind == "boolean" else "median"
                fill = float(SimpleImputer(strategy=strategy).fit(numbers).statistics_[0])
            columns.append({"name": str(name), "type": kind, "fill": fill})
        return cls(columns)

    def transform(self, features: pd.DataFrame, *, path: Path | str, first_row: int = 0) -> np.ndarray:
        """(n, len(output_names)) float32; ``path`` and ``first_row`` name the source in errors."""
        missing = [c for c in self.raw_columns if c not in features.columns]
        if missing:
            raise DataError(f"{path}: missing feature columns {missing[:5]}; expected {self.raw_columns[:10]}")
        parts = []
        for column in self.columns:
            values = features[column["name"]]
            if column["type"] == "categorical":
                codes = _as_category(values)
                index = {c: i for i, c in enumerate(column["categories"])}
                block = np.zeros((len(codes), len(index)), dtype=np.float32)
                hits = [(row, index[c]) for row, c in enumerate(codes) if c in index]
                if hits:
                    rows, cols = zip(*hits)
                    block[list(rows), list(cols)] = 1.0
                parts.append(block)
                continue
            numbers = _as_bool(values) if column["type"] == "boolean" else pd.to_numeric(values, errors="coerce")
            numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                bad = np.isnan(numbers) & values.notna().to_numpy() | ~(np.abs(np.nan_to_num(numbers)) <= 3e38)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                kind = "true/false" if column["type"] == "boolean" else "numeric (finite, float32 range)"
                raise DataError(f"{path}: column {column['name']!r} is not {kind} (row {first_row + row}: "
                                f"{values.iloc[row]!r}); expected the {column['type']} values of the transfer set")
            parts.append(np.where(np.isnan(numbers), column["fill"], numbers).astype(np.float32).reshape(-1, 1))
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(features), 0), dtype=np.float32)

    def to_dict(self) -> dict:
        return {"kind": "table", "columns": self.columns}

    @classmethod
    def from_dict(cls, value: dict) -> TableEncoder:
        if value.get("kind") != "table" or not isinstance(value.get("columns"), list):
            raise ValueError(f"not a table encoding: {str(value)[:80]}")
        return cls([dict(c) for c in value["columns"]])
