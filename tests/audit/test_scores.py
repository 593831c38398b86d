"""The score table and attack summary both audit tracks write."""

from __future__ import annotations

import numpy as np

from distillguard.audit.metrics import summarize, tpr_at_fpr
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
    lowest, unresolved = got.pop("lowest_fpr"), got.pop("unresolved")
    assert got == {"attack": "loss", "target": "student", "population": "all", **expected}
    # 50 non-members resolve FPR <= 2 % at best: 1 % and 0.1 % are null, with the reason
    assert got["tpr_at_fpr"]["0.01"] is None and got["tpr_at_fpr"]["0.001"] is None
    assert unresolved == {"0.01": "FPR <= 0.01 needs at least 100 non-members; 50 were scored",
                          "0.001": "FPR <= 0.001 needs at least 1000 non-members; 50 were scored"}
    assert lowest["fpr"] == 0.02 and lowest["note"] == "one false positive among 50 non-members"
    assert lowest["tpr"] == round(tpr_at_fpr(scores, is_member, 0.02), 6)
    # between the TPR at zero false positives and the TPR at two
    assert got["tpr_at_fpr"]["0"] <= lowest["tpr"] <= tpr_at_fpr(scores, is_member, 0.04)
    lo, hi = lowest["tpr_ci"]
    assert 0 <= lo <= lowest["tpr"] <= hi <= 1 and hi > lo


def test_summary_keeps_resolvable_levels_and_names_the_lowest(tiny_csv_spec):
    spec = load_spec(tiny_csv_spec)
    rng = np.random.default_rng(1)
    is_member = np.r_[np.ones(1200, bool), np.zeros(1250, bool)]
    scores = rng.normal(size=2450) + 2 * is_member
    got = summarize_attack(scores, is_member, spec=spec, target="student", attack="loss", population="all")
    assert got["unresolved"] == {}
    assert got["tpr_at_fpr"]["0.001"] == round(tpr_at_fpr(scores, is_member, 0.001), 6)
    assert got["lowest_fpr"]["fpr"] == 0.0008
    assert got["lowest_fpr"]["tpr"] == round(tpr_at_fpr(scores, is_member, 1 / 1250), 6)
