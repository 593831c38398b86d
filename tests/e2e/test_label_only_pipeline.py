"""The label-only attacks in a real run (the shared tiny CLI run): rows, query budgets, σ, leakage found."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from distillguard.audit.label_only import SIGMAS


def _rows(run):
    report = json.loads((run / "report.json").read_text())
    return {(a["attack"], a["target"]): a for a in report["attacks"] if a["attack"].startswith("label_")}


def test_label_only_attacks_report_their_queries_and_find_the_teachers_members(finished_run):
    rows = _rows(finished_run)
    assert set(rows) == {(a, t) for a in ("label_gap", "label_noise") for t in ("teacher", "student")}
    for (attack, target), row in rows.items():
        assert row["population"] == "all" and row["queries_per_record"] == (1 if attack == "label_gap" else 17)
        assert 0.0 <= row["tpr_at_fpr"]["0.01"] <= 1.0
    for attack in ("label_gap", "label_noise"):  # the teacher overfits its 135 members: labels alone show it
        assert rows[(attack, "teacher")]["auc_ci"][0] > 0.5, rows[(attack, "teacher")]
    assert rows[("label_noise", "teacher")]["auc"] > 0.6
    for target in ("teacher", "student"):
        noise = rows[("label_noise", target)]["noise"]
        assert noise["copies"] == 16 and noise["sigma"] in SIGMAS
        assert [c["sigma"] for c in noise["candidates"]] == list(SIGMAS)
        assert noise["sigma"] == max(noise["candidates"], key=lambda c: c["shadow_auc"])["sigma"]
        assert f"8 shadow {target}s" in noise["chosen_on"]
    html = (finished_run / "report.html").read_text()
    assert "labels only: 17 queries per record" in html and "labels only: 1 query per record" in html


def test_scores_parquet_holds_the_label_only_scores(finished_run):
    scores = pq.read_table(finished_run / "audit" / "scores.parquet").to_pandas()
    for (attack, target), row in _rows(finished_run).items():
        mine = scores[(scores.attack == attack) & (scores.target == target)]
        assert len(mine) == row["n_members"] + row["n_nonmembers"] and not mine.is_canary.any()
        assert roc_auc_score(mine.is_member, mine.score) == pytest.approx(row["auc"], abs=1e-6)
        steps = 1 if attack == "label_gap" else 17  # fractions of the queries answered right
        assert ((mine.score * steps).round(6) % 1 == 0).all() and mine.score.between(0, 1).all()
