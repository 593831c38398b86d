"""Per-record percentiles among non-members and the per-class risk summary, on hand-made cases."""

from __future__ import annotations

import numpy as np
from scipy.stats import percentileofscore

from distillguard.audit.record_risk import nonmember_percentile, record_risk_columns, risk_summary


def test_percentile_among_nonmembers_matches_scipy():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=300)
    is_member = rng.random(300) < 0.5
    ours = nonmember_percentile(scores, is_member)
    reference = [percentileofscore(scores[~is_member], s, kind="strict") for s in scores]
    np.testing.assert_allclose(ours, reference)


def test_summary_counts_records_above_the_threshold_and_ranks_classes():
    # 200 non-members with scores 0..199; members: class 0 scores far above, class 1 among the non-members.
    nonmember_scores = np.arange(200, dtype=float)
    members = {0: np.full(10, 1000.0), 1: np.linspace(0, 150, 10), 2: np.r_[np.full(3, 500.0), np.zeros(7)]}
    scores = np.concatenate([nonmember_scores, *members.values()])
    labels = np.r_[np.zeros(200, int) + 1, np.zeros(10, int), np.ones(10, int), np.full(10, 2)]
    is_member = np.r_[np.zeros(200, bool), np.ones(30, bool)]
    summary = risk_summary(labels=labels, classes=["a", "b", "c"], is_member=is_member, scores=scores,
                           target="student", attack="lira_online")
    # at or above the 99th percentile of the non-members = above 198 of the 200 non-member scores
    assert summary["nonmembers_at_risk"] == 2 and summary["members_at_risk"] == 13
    assert [row["class"] for row in summary["riskiest_classes"]] == ["a", "c", "b"]
    assert summary["riskiest_classes"][0]["rate"] == 1.0 and summary["riskiest_classes"][1]["rate"] == 0.3
    columns = record_risk_columns(example_ids=[f"r{i}" for i in range(230)], labels=labels, classes=["a", "b", "c"],
                                  is_member=is_member, scores={("student", "loss"): scores})
    assert set(columns) == {"example_id", "class", "is_member", "student:loss:score", "student:loss:percentile"}
    assert columns["class"][200] == "a" and columns["student:loss:percentile"][200] == 100.0
