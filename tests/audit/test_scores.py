"""The score table and attack summary both audit tracks write."""

from __future__ import annotations

import numpy as np

from distillguard.audit.metrics import summarize
from distillguard.audit.scores import FPRS, ScoreRows, summarize_attack
from distillguard.config import load_spec
from distillguard.seeding import derive_seed


def test_score_rows_hold_one_row_per_record_target_and_attack():
    rows = ScoreRows()
    rows.add(["a", "b"], "teacher", "loss", np.array([0.5, 0.25]), np.array([1, 0]), canary=False)
    rows.add(["c"], "student", "rmia", np.array([1.0]), np.array([True]), canary=True)
    assert rows.columns == {"example_id": ["a", "b", "c"], "target": ["teacher", "teacher", "student"],
                            "attack": ["loss", "loss", "rmia"], "score": [0.5, 0.25, 1.0],
                            "is_member": [True, False, True], "is_canary": [False, False, True]}


def test_summary_bootstrap_is_seeded_by_target_attack_and_population(tiny_csv_spec):
    spec = load_spec(tiny_csv_spec)
    rng = np.random.default_rng(0)
    is_member = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    scores = rng.normal(size=100) + is_member
    got = summarize_attack(scores, is_member, spec=spec, target="student", attack="loss", population="all")
    expected = summarize(scores, is_member, fprs=FPRS, n_bootstrap=spec.audit.bootstrap,
                         confidence=spec.audit.confidence,
                         seed=derive_seed(spec.run.seed, "bootstrap", "student", "loss", "all")).to_dict()
    assert got == {"attack": "loss", "target": "student", "population": "all", **expected}
