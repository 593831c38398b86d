"""Label-only attacks: known cases, the noise attack's score against its analytic value, σ chosen on shadows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from distillguard.audit import label_only as L
from distillguard.audit.metrics import auc
from distillguard.config import parse_spec


def _pool(k: int = 40, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2 * k, d)).astype(np.float32)
    y = np.tile([0, 1], k)  # both classes among members (first k) and non-members (last k)
    is_member = np.r_[np.ones(k, bool), np.zeros(k, bool)]
    return X, y, is_member


def _plan(X, copies=8, seed=0):
    return L.NoisePlan.build(X, np.random.default_rng(1).normal(size=(50, X.shape[1])), copies=copies, seed=seed)


def test_a_model_right_on_members_only_is_found_with_auc_one_by_both_attacks():
    X, _, is_member = _pool()
    labels = np.zeros(len(X), dtype=int)
    member_rows = {row.tobytes() for row in X[is_member]}
    # right (class 0) exactly on the rows it trained on; any other row, a noisy copy included, gets class 2
    predict = lambda rows: np.array([0 if r.tobytes() in member_rows else 2 for r in rows])  # noqa: E731
    plan = _plan(X)
    scored = L.label_only_scores(["label_gap", "label_noise"], plan, predict=predict, X=X, labels=labels, sigma=0.3)
    gap, gap_queries = scored["label_gap"]
    assert gap_queries == 1 and auc(gap, is_member) == 1.0 and set(np.unique(gap)) == {0.0, 1.0}
    noise, noise_queries = scored["label_noise"]
    assert noise_queries == plan.copies + 1 == 9
    assert auc(noise, is_member) == 1.0
    assert np.allclose(noise[is_member], 1 / 9) and np.allclose(noise[~is_member], 0)  # only the clean query is right


def test_the_gap_attacks_auc_is_half_plus_half_the_accuracy_gap():
    X, y, is_member = _pool(k=200)
    right = np.random.default_rng(5).random(len(y)) < np.where(is_member, 0.9, 0.6)
    predict = lambda rows: np.where(right, y, 1 - y)  # noqa: E731
    scores, _ = L.label_only_scores(["label_gap"], None, predict=predict, X=X, labels=y, sigma=0.3)["label_gap"]
    gap = right[is_member].mean() - right[~is_member].mean()
    assert auc(scores, is_member) == pytest.approx(0.5 + gap / 2, abs=1e-12)


def test_a_constant_model_gives_chance():
    X, y, is_member = _pool()
    constant = lambda rows: np.zeros(len(rows), dtype=int)  # noqa: E731
    scored = L.label_only_scores(["label_gap", "label_noise"], _plan(X), predict=constant, X=X, labels=y, sigma=1.0)
    for name, (scores, _) in scored.items():
        assert auc(scores, is_member) == pytest.approx(0.5), name


def test_the_noise_score_on_a_threshold_model_is_the_analytic_fraction():
    """f(x) = 1[x > 0] in 1-D, scale 1: a record at a > 0 keeps its label with probability Φ(a/σ)."""
    a = np.array([0.05, 0.2, 0.5, 1.0, -0.3], dtype=np.float32)[:, None]
    labels = np.array([1, 1, 1, 1, 0])
    population = np.array([[-1.0], [1.0]])  # standard deviation exactly 1
    plan = L.NoisePlan.build(a, population, copies=4000, seed=3)
    assert plan.scale.tolist() == [1.0]
    predict = lambda rows: (rows[:, 0] > 0).astype(int)  # noqa: E731
    for sigma in (0.3, 1.0):
        scores, queries = L.label_only_scores(["label_noise"], plan, predict=predict, X=a, labels=labels,
                                              sigma=sigma)["label_noise"]
        expected = (1 + 4000 * norm.cdf(np.abs(a[:, 0]) / sigma)) / 4001
        assert queries == 4001
        np.testing.assert_allclose(scores, expected, atol=0.025)


def test_noise_is_seeded_shared_across_sigmas_and_scaled_per_feature():
    X, _, _ = _pool(k=5, d=2)
    population = np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]])  # spreads: 1.633 and 0 (constant)
    plan = L.NoisePlan.build(X, population, copies=3, seed=7)
    again = L.NoisePlan.build(X, population, copies=3, seed=7)
    other = L.NoisePlan.build(X, population, copies=3, seed=8)
    assert np.array_equal(plan.noise, again.noise) and not np.array_equal(plan.noise, other.noise)
    small, large = plan.rows(X, 0.1) - np.tile(X, (3, 1)), plan.rows(X, 1.0) - np.tile(X, (3, 1))
    np.testing.assert_allclose(large, 10 * small, rtol=1e-4, atol=1e-6)  # one ε for every σ
    assert np.all(large[:, 1] == 0)  # a constant feature is not perturbed
    np.testing.assert_allclose(large[:, 0], plan.noise[:, :, 0].ravel() * np.std([0, 2, 4]), rtol=1e-5)
    assert plan.rows(X, 0.3).shape == (3 * 10, 2)  # copy-major: 3 copies of 10 records
    with pytest.raises(ValueError, match="at least one noisy copy"):
        L.NoisePlan.build(X, population, copies=0, seed=7)


def test_sigma_is_chosen_on_the_shadows_own_membership():
    """Shadows whose copies at σ = 0.3 survive only for their members: 0.3 wins with shadow AUC 1."""
    X, y, _ = _pool(k=100)
    plan = _plan(X, copies=4)
    m, S = len(plan.selection), 4
    rng = np.random.default_rng(0)
    membership = np.stack([rng.permutation(len(X)) < len(X) // 2 for _ in range(S)])
    clean = np.tile(y, (S, 1))  # every shadow right on every record itself
    sel_labels, sel_in = y[plan.selection], membership[:, plan.selection]
    noisy = {}
    for g, sigma in enumerate(L.SIGMAS):
        right = np.broadcast_to(sel_in[:, None, :], (S, 4, m)) if sigma == 0.3 else rng.random((S, 4, m)) < 0.5
        noisy[f"{L.SHADOW_SET}{g}"] = np.where(right, sel_labels, 5).reshape(S, 4 * m)
    sigma, table = L.choose_sigma(plan, clean_predicted=clean, noisy_predicted=noisy, membership=membership, labels=y)
    assert sigma == 0.3
    assert [row["sigma"] for row in table] == list(L.SIGMAS)
    assert table[1]["shadow_auc"] == 1.0 and all(abs(row["shadow_auc"] - 0.5) < 0.1 for row in (table[0], table[2]))


def test_without_shadows_the_default_sigma_is_used_and_said():
    X, _, _ = _pool()
    setting = L.noise_setting(_plan(X), target="teacher")
    assert setting["sigma"] == L.DEFAULT_SIGMA and "no shadows" in setting["chosen_on"]
    assert setting["copies"] == 8


def test_the_spec_knob_sets_the_copies_and_turns_the_attacks_off():
    base = Path("/tmp")
    default = parse_spec({}, base_dir=base)
    assert {"label_gap", "label_noise"} <= set(default.audit.attacks) and default.audit.label_only_queries == 16
    assert default.gate.attack == "strongest"  # the label-only attacks never become the gate's default
    off = parse_spec({"audit": {"label_only_queries": 0}}, base_dir=base)
    assert not {"label_gap", "label_noise"} & set(off.audit.attacks) and "strongest" in off.audit.attacks
    assert not {"label_gap", "label_noise"} & set(parse_spec({"audit": {"shadows": 0}}, base_dir=base).audit.attacks)
    gap_only = parse_spec({"audit": {"label_only_queries": 0, "attacks": ["loss", "label_gap"]}}, base_dir=base)
    assert gap_only.audit.attacks == ["loss", "label_gap"]
    with pytest.raises(Exception, match="scored on the audit pool only"):
        parse_spec({"gate": {"attack": "label_noise", "population": "canaries"}}, base_dir=base)
    with pytest.raises(Exception, match="label_noise needs label_only_queries >= 1"):
        parse_spec({"audit": {"label_only_queries": 0, "attacks": ["loss", "label_noise"]}}, base_dir=base)
