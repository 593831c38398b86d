"""Leak guard: find records of the sensitive data inside the transfer set.

The threat model (DESIGN.md) rests on the student seeing only ``(x, teacher(x))`` for
``x`` in the transfer set. If a member record is in the transfer set, the teacher's
memorized answer on it is handed to the student as a label, and the student inherits
exactly the leak distillation is meant to remove. So the transfer set is checked, not
trusted, before the teacher labels anything:

- exact copies, by hashing a canonical form of each record;
- near-duplicates (a copy with noise, rounding or a few words edited), by a
  nearest-neighbour distance for tabular data and MinHash LSH with exact Jaccard
  verification for text.

Everything here is a pure function of arrays and strings; the caller reads the files
and decides what to show. The finders live beside this module, one per kind of data
(data/leakguard_tabular.py, data/leakguard_text.py); this one holds what they share: the
:class:`LeakReport` they return, and :func:`apply_policy`, which turns a report into the
rows to keep, or a :class:`~distillguard.errors.DataLeakError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from distillguard.errors import DataLeakError

TABULAR_METHOD = "tabular-hash+nn"
TEXT_METHOD = "text-hash+minhash"
_CRITERIA = {  # method -> (what a near value is, how it meets the threshold, its key in to_dict)
    TABULAR_METHOD: ("relative distance", "≤", "relative_distance"),
    TEXT_METHOD: ("Jaccard similarity", "≥", "jaccard"),
}
_UNKNOWN_CRITERION = ("score", "vs", "score")
_POLICIES = ("fail", "drop", "warn")


@dataclass(frozen=True)
class LeakReport:
    """What the leak guard found; sorted by transfer row, then private split.

    Attributes:
        exact: ``(transfer row, private split, private row)`` for every split holding an
            exact copy of the transfer row (its first copy in that split).
        near: ``(transfer row, private split, private row, value)`` for transfer rows
            without an exact copy whose closest private record passes the threshold;
            ``value`` is the relative distance (tabular) or the Jaccard similarity (text).
        threshold: the near-duplicate threshold that was applied.
        method: :data:`TABULAR_METHOD` or :data:`TEXT_METHOD`; says what ``value`` means.
    """

    exact: list[tuple[int, str, int]]
    near: list[tuple[int, str, int, float]]
    threshold: float
    method: str

    @property
    def transfer_rows(self) -> np.ndarray:
        """(k,) int64 sorted unique transfer rows flagged, exact or near."""
        rows = [t for t, *_ in self.exact] + [t for t, *_ in self.near]
        return np.unique(np.asarray(rows, dtype=np.int64))

    @property
    def n_exact(self) -> int:
        """Transfer rows with an exact copy in the private data (each counted once)."""
        return len({t for t, *_ in self.exact})

    @property
    def n_near(self) -> int:
        """Transfer rows that are near-duplicates (and not exact copies) of a private record."""
        return len({t for t, *_ in self.near})

    @property
    def criterion(self) -> str:
        """The near-duplicate rule in words, e.g. ``relative distance ≤ 0.02``."""
        name, op, _ = _CRITERIA.get(self.method, _UNKNOWN_CRITERION)
        return f"{name} {op} {self.threshold:g}"

    def summary(self, limit: int = 5) -> str:
        """One line for a log or an error: counts and the first ``limit`` transfer rows."""
        rows = self.transfer_rows
        if rows.size == 0:
            return f"no overlap between the transfer set and the private data ({self.criterion})"
        shown = ", ".join(str(int(r)) for r in rows[:limit]) + ("…" if rows.size > limit else "")
        subject = f"transfer rows {shown} overlap" if rows.size > 1 else f"transfer row {shown} overlaps"
        return (f"{subject} the private data: {_plural(self.n_exact, 'exact copy', 'exact copies')}, "
                f"{_plural(self.n_near, 'near-duplicate', 'near-duplicates')} ({self.criterion})")

    def to_dict(self) -> dict:
        """JSON-able form for the run manifest and the report."""
        value_key = _CRITERIA.get(self.method, _UNKNOWN_CRITERION)[2]
        return {
            "method": self.method,
            "threshold": float(self.threshold),
            "criterion": self.criterion,
            "n_flagged": int(self.transfer_rows.size),
            "n_exact": self.n_exact,
            "n_near": self.n_near,
            "transfer_rows": [int(r) for r in self.transfer_rows],
            "exact": [{"transfer_row": int(t), "split": s, "private_row": int(p)} for t, s, p in self.exact],
            "near": [{"transfer_row": int(t), "split": s, "private_row": int(p), value_key: float(v)}
                     for t, s, p, v in self.near],
            "summary": self.summary(),
        }


def shift_rows(report: LeakReport, offset: int) -> LeakReport:
    """The report of a chunk, with transfer rows counted from the file's start (chunk + ``offset``)."""
    if offset == 0:
        return report
    return LeakReport(exact=[(t + offset, s, p) for t, s, p in report.exact],
                      near=[(t + offset, s, p, v) for t, s, p, v in report.near],
                      threshold=report.threshold, method=report.method)


def merge_reports(reports: Sequence[LeakReport]) -> LeakReport:
    """One report for a transfer set guarded in chunks (reports already in file rows, as from :func:`shift_rows`)."""
    first = reports[0]
    return LeakReport(exact=sorted(e for r in reports for e in r.exact), near=sorted(n for r in reports for n in r.near),
                      threshold=first.threshold, method=first.method)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def pool_owners(private: dict[str, np.ndarray]) -> tuple[list[str], list[str], np.ndarray]:
    """Split names, and for each pooled private record its split and row within the split."""
    names = list(private)
    owner_split = [name for name in names for _ in range(len(private[name]))]
    owner_row = np.concatenate([np.arange(len(private[n])) for n in names]) if names else np.zeros(0, np.int64)
    return names, owner_split, owner_row.astype(np.int64)


def exact_matches(transfer_keys: Sequence[bytes], private_keys: Sequence[bytes],
                  owner_split: list[str], owner_row: np.ndarray) -> list[tuple]:
    """``(transfer row, split, first private row of that split)`` for each split holding the key."""
    index: dict[bytes, dict[str, int]] = {}
    for j, key in enumerate(private_keys):
        index.setdefault(key, {}).setdefault(owner_split[j], int(owner_row[j]))
    return [(t, split, row) for t, key in enumerate(transfer_keys) for split, row in index.get(key, {}).items()]


def apply_policy(report: LeakReport, *, policy: Literal["fail", "drop", "warn"], n_transfer: int,
                 source: str) -> np.ndarray:
    """Turn a leak report into the transfer rows to keep.

    Args:
        report: what :func:`find_tabular_leaks` or :func:`find_text_leaks` found.
        policy: ``"fail"`` raises on any finding (the safe default: a leak is a data bug
            the user should see); ``"drop"`` keeps every row that was not flagged;
            ``"warn"`` keeps all rows, and the caller shows ``report.summary()``.
        n_transfer: rows in the transfer set.
        source: where the transfer set came from (a file path, or ``"transfer"``), named
            in the error.

    Returns:
        (k,) int64 sorted transfer rows to keep.

    Raises:
        DataLeakError: policy ``"fail"`` and the report has a finding.
        ValueError: an unknown policy, or flagged rows outside ``range(n_transfer)``.
    """
    if policy not in _POLICIES:
        raise ValueError(f"The 'policy' parameter of apply_policy must be one of {', '.join(map(repr, _POLICIES))}. "
                         f"Got {policy!r} instead.")
    flagged = report.transfer_rows
    if n_transfer < 0 or (flagged.size and flagged[-1] >= n_transfer):
        raise ValueError(f"the leak report flags transfer row {int(flagged[-1]) if flagged.size else '-'} but "
                         f"n_transfer is {n_transfer}; the report belongs to another transfer set")
    keep = np.arange(n_transfer, dtype=np.int64)
    if policy == "fail" and flagged.size:
        raise DataLeakError(
            f"{source}: {report.summary()}; the teacher would label records of the sensitive data and leak them to "
            f"the student. Remove these rows from {source}, or set [data] leak_policy = \"drop\" to drop them")
    if policy == "drop":
        return np.setdiff1d(keep, flagged)
    return keep


def check_number(name: str, owner: str, value: float, *, low: float, high: float = math.inf,
                 open_low: bool = False) -> None:
    ok = isinstance(value, int | float | np.floating | np.integer) and math.isfinite(value) and value <= high
    ok = ok and (value > low if open_low else value >= low)
    if not ok:
        bound = f"in ({low}, {high}]" if open_low else f"a finite number >= {low}"
        raise ValueError(f"The '{name}' parameter of {owner} must be {bound}. Got {value!r} instead.")
