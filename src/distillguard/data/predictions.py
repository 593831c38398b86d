"""A predictions file: a model's outputs on the audited records, for models that cannot leave their platform.

One row per audited record, Parquet or CSV:

- ``example_id``: ``members:ROW`` or ``nonmembers:ROW``, ROW the 0-based row of that
  ``[data]`` file (the ids ``audit/scores.parquet`` uses); the true label comes from there;
- ``is_member``: true / false (or 1 / 0), which must agree with the id's role;
- one column per class, named as the classes (``str(class)``): logits, or probabilities.
  Every value in [0, 1] means probabilities, and then every row must sum to 1 within
  :data:`SUM_TOLERANCE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.errors import DataError

#: A row of probabilities sums to 1 within this.
SUM_TOLERANCE = 1e-4
#: Probabilities are floored here before the log (a zero would be an infinite logit).
MIN_PROBABILITY = 1e-30
ROLE_PREFIXES = {"members": True, "nonmembers": False}


@dataclass(frozen=True)
class Predictions:
    """example_ids (n,) str, is_member (n,) bool, logits (n, C) in the data's class order."""

    example_ids: list[str]
    is_member: np.ndarray
    logits: np.ndarray

    def rows(self, role: str) -> np.ndarray:
        """The ROW numbers of the ids of one role (``members`` / ``nonmembers``), in file order."""
        return np.array([int(i.split(":", 1)[1]) for i in self.example_ids if i.split(":", 1)[0] == role], np.int64)


def read_predictions(path: Path, classes: list) -> Predictions:
    """Read and check a predictions file; logits come back in the order of ``classes``."""
    frame = _read_frame(Path(path))
    missing = [c for c in ("example_id", "is_member") if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r}; a predictions file has example_id, is_member and one "
                        f"column per class (columns: {list(frame.columns)[:8]})")
    names = [str(c) for c in classes]
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise DataError(f"{path}: no column for class {absent[0]!r}; expected one column per class of the data, "
                        f"named {names[:10]}")
    ids = [str(i) for i in frame["example_id"].tolist()]
    _check_ids(path, ids)
    is_member = _member_flags(path, frame["is_member"], ids)
    scores = frame[names].to_numpy(dtype=np.float64, na_value=np.nan)
    return Predictions(ids, is_member, as_logits(scores, source=str(path), row_ids=ids))


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: [scan].predictions file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable {suffix[1:]} file ({str(error).splitlines()[0][:200]})") from None
    raise DataError(f"{path}: [scan].predictions must be a .parquet or .csv file (got {suffix or 'no suffix'!r})")


def _check_ids(path: Path, ids: list[str]) -> None:
    for i in ids:
        role, _, row = i.partition(":")
        if role not in ROLE_PREFIXES or not row.isdigit():
            raise DataError(f"{path}: example_id {i!r}: expected members:ROW or nonmembers:ROW (ROW the 0-based row "
                            "of that [data] file)")
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise DataError(f"{path}: example_id {i!r} appears twice; one row per audited record")
        seen.add(i)


def _member_flags(path: Path, column: pd.Series, ids: list[str]) -> np.ndarray:
    values = column.tolist()
    flags = []
    for i, v in zip(ids, values, strict=True):
        flag = {True: True, False: False, 1: True, 0: False, "true": True, "false": False}.get(
            v.lower() if isinstance(v, str) else v)
        if flag is None:
            raise DataError(f"{path}: is_member of {i}: expected true/false or 1/0, got {v!r}")
        if flag != ROLE_PREFIXES[i.split(":", 1)[0]]:
            raise DataError(f"{path}: is_member of {i} is {v!r}, but its id names the {i.split(':', 1)[0]} file")
        flags.append(flag)
    return np.asarray(flags, dtype=bool)


def as_logits(scores: np.ndarray, *, source: str, row_ids: list[str] | None = None) -> np.ndarray:
    """(n, C) logits from logits or probabilities: every value in [0, 1] means probabilities.

    Probabilities must sum to 1 within :data:`SUM_TOLERANCE` in every row; they become
    log-probabilities. The error names ``source`` and the first bad row (its id when given).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        row = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
        raise DataError(f"{source}: row {row_ids[row] if row_ids else row} has a NaN or infinite output")
    if scores.size == 0 or scores.min() < 0 or scores.max() > 1:
        return scores
    sums = scores.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > SUM_TOLERANCE)
    if len(bad):
        row = int(bad[0])
        raise DataError(f"{source}: outputs in [0, 1] are read as probabilities, but row "
                        f"{row_ids[row] if row_ids else row} sums to {sums[row]:.6g} (expected 1 within "
                        f"{SUM_TOLERANCE:g}); give logits or normalized probabilities")
    return np.log(np.maximum(scores, MIN_PROBABILITY))
