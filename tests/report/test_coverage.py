"""The warning for a transfer set whose teacher labels cover the classes very unevenly."""

from __future__ import annotations

import numpy as np

from distillguard.report.coverage import coverage_warning


def test_one_class_of_two_is_warned_with_counts():
    warning = coverage_warning(np.array([2990, 10]), ["low", "high"])
    assert "labels 2990 of 3000 transfer records as 'low'" in warning
    assert "1 of 2 classes get under 10% of an even share ('high': 10)" in warning


def test_even_or_mildly_uneven_coverage_is_not_warned():
    assert coverage_warning(np.array([1000, 1000, 1000]), ["a", "b", "c"]) is None
    assert coverage_warning(np.array([1800, 1000, 200]), ["a", "b", "c"]) is None  # 200 ≥ 10% of 1000


def test_many_under_covered_classes_are_cut():
    counts = np.r_[np.full(10, 1000), np.zeros(8, dtype=int)]
    warning = coverage_warning(counts, [f"c{i}" for i in range(18)])
    assert "8 of 18 classes" in warning and "'c10': 0" in warning and ", …" in warning


def test_one_rare_class_among_a_hundred_is_not_warned():
    """The demo's case: 3,000 transfer records over 100 classes, one class labelled once."""
    counts = np.r_[np.full(99, 30), 1]
    assert coverage_warning(counts, list(range(100))) is None
    counts = np.r_[np.full(90, 33), np.ones(10, dtype=int)]  # a tenth of the classes nearly empty
    assert "10 of 100 classes" in coverage_warning(counts, list(range(100)))
