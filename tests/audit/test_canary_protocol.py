"""The field's canary metric (Aerni et al. 2024) and the mislabeled canaries it is read on."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.audit.canary_protocol import canary_family, vulnerable_record_rows
from distillguard.audit.metrics import tpr_at_fpr
from distillguard.audit.scores import summarize_attack
from distillguard.audit.shadows import plant_canaries
from distillguard.config import load_spec

KINDS = ["ood_mislabeled", "ood_mislabeled_x4", "mislabeled", "mislabeled_x4"]


def test_family_drops_only_the_duplication_suffix():
    assert [canary_family(k) for k in KINDS] == ["ood_mislabeled", "ood_mislabeled", "mislabeled", "mislabeled"]
    assert canary_family("max_xy") == "max_xy"


def _summarize(spec):
    return lambda sc, inc, family: summarize_attack(sc, inc, spec=spec, target="student", attack="strongest",
                                                    population=f"canaries:{family}")


def test_pooled_tpr_at_a_tenth_of_a_percent_on_a_hand_made_case(tiny_csv_spec):
    # 1,200 replicas x 4 canaries: per family 2,400 draws, about 1,200 out, so 0.1 % FPR resolves.
    spec = load_spec(tiny_csv_spec)
    rng = np.random.default_rng(0)
    S, K = 1200, len(KINDS)
    included = rng.random((S, K)) < 0.5
    scores = rng.normal(size=(S, K))
    # mislabeled canaries: every member above every non-member except 10 % of members, pushed to the bottom
    mis = np.array([False, False, True, True])
    low = rng.random((S, K)) < 0.1
    scores[:, mis] = np.where(included[:, mis] & ~low[:, mis], 10 + scores[:, mis], scores[:, mis] - 10 * low[:, mis])
    rows = vulnerable_record_rows((scores.reshape(-1), included.reshape(-1)), KINDS, target="student",
                                  attack="strongest", summarize=_summarize(spec))
    by = {r["family"]: r for r in rows}
    assert [r["family"] for r in rows] == ["ood_mislabeled", "mislabeled"]
    assert by["mislabeled"]["canary_ids"] == [2, 3] and by["ood_mislabeled"]["canary_ids"] == [0, 1]
    keep = np.tile(mis, S)
    expected = tpr_at_fpr(scores.reshape(-1)[keep], included.reshape(-1)[keep], 0.001)
    assert by["mislabeled"]["tpr_at_fpr"]["0.001"] == pytest.approx(expected, abs=1e-6)
    assert 0.85 < by["mislabeled"]["tpr_at_fpr"]["0.001"] < 0.95  # the 10 % pushed down are missed
    assert by["ood_mislabeled"]["tpr_at_fpr"]["0.001"] < 0.05  # pure noise
    assert by["mislabeled"]["n_members"] + by["mislabeled"]["n_nonmembers"] == 2 * S


def test_too_few_draws_give_null_with_the_reason(tiny_csv_spec):
    spec = load_spec(tiny_csv_spec)
    rng = np.random.default_rng(1)
    S = 16
    included = rng.random((S, 4)) < 0.5
    rows = vulnerable_record_rows((rng.normal(size=S * 4), included.reshape(-1)), KINDS, target="teacher",
                                  attack="loss", summarize=_summarize(spec))
    for row in rows:
        assert row["tpr_at_fpr"]["0.001"] is None
        assert row["unresolved"]["0.001"].startswith("FPR <= 0.001 needs at least 1000 non-members;")
        assert row["lowest_fpr"]["fpr"] == pytest.approx(1 / row["n_nonmembers"], abs=1e-6)
    with pytest.raises(ValueError, match="do not split into replicas of 4 canaries"):
        vulnerable_record_rows((np.zeros(10), np.zeros(10, bool)), KINDS, target="t", attack="a",
                               summarize=_summarize(spec))


def test_mislabeled_canaries_are_real_source_records_with_a_wrong_label():
    rng = np.random.default_rng(0)
    pool_X, source_X = rng.normal(size=(200, 5)).astype(np.float32), rng.normal(size=(100, 5)).astype(np.float32)
    source_y = rng.integers(0, 3, size=100)
    c = plant_canaries(pool_X, n_classes=3, count=8, duplicates=4, n_shadows=6, seed=7, kind="both",
                       source_X=source_X, source_y=source_y)
    assert c.kind == ["ood_mislabeled", "ood_mislabeled_x4"] * 2 + ["mislabeled", "mislabeled_x4"] * 2
    assert list(c.repeats) == [1, 4] * 4 and c.included.shape == (6, 8)
    rows = [int(np.flatnonzero((source_X == x).all(axis=1))[0]) for x in np.r_[c.X[4:], c.decoy_X[4:]]]
    assert len(set(rows)) == 8  # canaries and decoys: distinct real records
    assert np.all(np.r_[c.y[4:], c.decoy_y[4:]] != source_y[rows])  # always a wrong label
    # ood canaries are not source records
    assert not any((source_X == x).all(axis=1).any() for x in c.X[:4])
    # seeded: the same call plants the same canaries
    again = plant_canaries(pool_X, n_classes=3, count=8, duplicates=4, n_shadows=6, seed=7, kind="both",
                           source_X=source_X, source_y=source_y)
    assert np.array_equal(again.X, c.X) and np.array_equal(again.y, c.y)
    only_ood = plant_canaries(pool_X, n_classes=3, count=8, duplicates=4, n_shadows=6, seed=7)
    assert only_ood.kind == ["ood_mislabeled", "ood_mislabeled_x4"] * 4
    small = plant_canaries(pool_X, n_classes=3, count=8, duplicates=4, n_shadows=6, seed=7, kind="mislabeled",
                           source_X=source_X[:6], source_y=source_y[:6])  # room for 3 canaries + 3 decoys
    assert [k.startswith("mislabeled") for k in small.kind] == [False] * 5 + [True] * 3
    with pytest.raises(ValueError, match="need real records to mislabel"):
        plant_canaries(pool_X, n_classes=3, count=8, duplicates=4, n_shadows=6, seed=7, kind="mislabeled")
