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


def test_label_counts_read_the_released_shards(tmp_path):
    """The issue's case end to end on a softlabels/ folder: a transfer set covering one class of two."""
    import json

    from distillguard.data.softlabel_shards import write_logit_shards
    from distillguard.report.coverage import label_counts

    logits = np.zeros((3000, 2), dtype=np.float32)
    logits[:2990, 0] = 3.0  # the teacher calls 2,990 records class 0
    logits[2990:, 1] = 3.0
    names = write_logit_shards(tmp_path, ids=np.arange(3000), logits_of=lambda x: x, X=logits, shard_rows=1000)
    (tmp_path / "meta.json").write_text(json.dumps({"kind": "logits", "n_classes": 2, "shards": names}))
    counts = label_counts(tmp_path)
    assert counts.tolist() == [2990, 10]
    assert "2990 of 3000" in coverage_warning(counts, ["benign", "malignant"])
    assert label_counts(tmp_path / "missing") is None
