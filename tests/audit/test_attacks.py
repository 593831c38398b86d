"""Signals against their formulas; every attack on memorizing / never-trained / Gaussian setups."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from distillguard.audit import attacks as A
from distillguard.audit.metrics import auc, tpr_at_fpr
from distillguard.audit.signals import (
    ReferenceSignals,
    TargetSignals,
    entropy,
    lira_statistic,
    log_softmax,
    modified_entropy,
    true_class_logprob,
)

ALL = ["loss", "confidence", "entropy", "modified_entropy", "lira_online", "lira_offline", "rmia"]
C = 10


# --- signals ------------------------------------------------------------------------------------


def test_signals_equal_naive_formulas_at_moderate_logits():
    rng = np.random.default_rng(0)
    z, y = rng.normal(0, 2, (50, C)), rng.integers(0, C, 50)
    p = softmax(z, axis=1)
    p_y = p[np.arange(50), y]
    np.testing.assert_allclose(log_softmax(z), np.log(p), atol=1e-12)
    np.testing.assert_allclose(true_class_logprob(z, y), np.log(p_y), atol=1e-12)
    np.testing.assert_allclose(lira_statistic(z, y), np.log(p_y) - np.log(1 - p_y), atol=1e-10)
    np.testing.assert_allclose(entropy(z), -np.sum(p * np.log(p), axis=1), atol=1e-12)
    others = np.where(np.arange(C) == y[:, None], 0.0, p * np.log(1 - p)).sum(axis=1)
    np.testing.assert_allclose(modified_entropy(z, y), -(1 - p_y) * np.log(p_y) - others, atol=1e-10)


def test_signals_broadcast_over_models():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(3, 20, C)), rng.integers(0, C, 20)
    for fn in (true_class_logprob, lira_statistic, modified_entropy):
        stacked = fn(z, y)
        assert stacked.shape == (3, 20)
        np.testing.assert_allclose(stacked[2], fn(z[2], y))


def test_signals_stable_at_extreme_logits():
    z = np.array([[1000.0, 0.0, 0.0], [1000.0, 0.0, 0.0], [-1000.0, 0.0, 5.0]])
    y = np.array([0, 1, 0])
    phi = lira_statistic(z, y)
    assert phi[0] == pytest.approx(1000 - np.log(2))  # p_y rounds to 1; φ must not be inf
    assert phi[1] == pytest.approx(-1000.0, abs=1e-9)
    assert phi[2] == pytest.approx(-1000 - np.logaddexp(0, 5))
    assert true_class_logprob(z, y)[1] == pytest.approx(-1000.0)
    assert entropy(z)[0] == pytest.approx(0.0, abs=1e-300)
    mentr = modified_entropy(z, y)
    assert np.all(np.isfinite(mentr))
    # confident and right ≈ 0; confident and wrong: −log p_y ≈ 1000 plus −log(1−p_0) = 1000 − log 2
    assert mentr[0] == pytest.approx(0.0, abs=1e-100)
    assert mentr[1] == pytest.approx(2000 - np.log(2))
    # ranking survives where probabilities round to 0/1
    assert lira_statistic(np.array([[900.0, 0.0], [1000.0, 0.0]]), np.array([0, 0]))[0] < 1000 - 1


def test_signal_containers_validate():
    with pytest.raises(ValueError, match="labels must have shape"):
        TargetSignals(logits=np.zeros((4, 3)), labels=np.zeros(5, int))
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        TargetSignals(logits=np.zeros((2, 3)), labels=np.array([0, 3]))
    with pytest.raises(ValueError, match="together"):
        TargetSignals(logits=np.zeros((2, 3)), labels=np.array([0, 1]), population_logits=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="in_mask"):
        ReferenceSignals(logits=np.zeros((2, 4, 3)), in_mask=np.zeros((2, 5), bool), labels=np.zeros(4, int))


# --- synthetic worlds -------------------------------------------------------------------------------


def _logits(rng, n, memorized, *, strength=8.0):
    """Random logits; rows where ``memorized`` get +strength on the true class."""
    labels = rng.integers(0, C, n)
    z = rng.normal(0, 1, (n, C))
    z[np.arange(n), labels] += strength * memorized
    return z, labels


def _world(*, target_memorizes: bool, n=600, m=400, shadows=16, seed=0):
    """Audited records (first half members), S shadows trained on random halves, a population."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n)
    base = rng.normal(0, 1, (n, C))  # each record's "typical" logits
    is_member = np.arange(n) < n // 2
    in_mask = rng.random((shadows, n)) < 0.5
    pop_labels = rng.integers(0, C, m)
    pop_base = rng.normal(0, 1, (m, C))

    def model(member_rows, base_, labels_):
        z = base_ + rng.normal(0, 0.5, base_.shape)
        z[np.arange(len(labels_)), labels_] += 6.0 * member_rows
        return z

    target_in = is_member if target_memorizes else np.zeros(n, bool)
    target = TargetSignals(logits=model(target_in, base, labels), labels=labels,
                           population_logits=model(np.zeros(m, bool), pop_base, pop_labels), population_labels=pop_labels)
    reference = ReferenceSignals(
        logits=np.stack([model(in_mask[s], base, labels) for s in range(shadows)]), in_mask=in_mask, labels=labels,
        population_logits=np.stack([model(np.zeros(m, bool), pop_base, pop_labels) for _ in range(shadows)]),
        population_labels=pop_labels)
    return target, reference, is_member


@pytest.mark.parametrize("name", ALL)
def test_memorizing_model_is_caught_and_higher_means_member(name):
    target, reference, is_member = _world(target_memorizes=True)
    scores = A.make_attack(name).fit(reference).score(target)
    assert scores.shape == is_member.shape and np.all(np.isfinite(scores))
    assert auc(scores, is_member) > 0.95


@pytest.mark.parametrize("name", ALL)
def test_model_that_never_saw_the_data_is_at_chance(name):
    target, reference, is_member = _world(target_memorizes=False, n=2000, m=300, shadows=8, seed=1)
    scores = A.make_attack(name).fit(reference).score(target)
    assert 0.45 <= auc(scores, is_member) <= 0.55


def test_lira_online_beats_loss_at_low_fpr_on_gaussians():
    # Per-record difficulty d_i spreads φ across records far more than membership shifts it,
    # so a global threshold (loss) is weak while LiRA's per-record Gaussians are strong.
    rng = np.random.default_rng(2)
    n, shadows = 2000, 32
    d = rng.normal(0, 3, n)
    in_mask = rng.random((shadows, n)) < 0.5
    shadow_phi = d + 2.0 * in_mask + rng.normal(0, 1, (shadows, n))
    is_member = rng.random(n) < 0.5
    target_phi = d + 2.0 * is_member + rng.normal(0, 1, n)
    labels = np.ones(n, dtype=int)

    def as_logits(phi):  # two classes, label 1: lira_statistic = φ exactly
        return np.stack([np.zeros_like(phi), phi], axis=-1)

    target = TargetSignals(logits=as_logits(target_phi), labels=labels)
    reference = ReferenceSignals(logits=as_logits(shadow_phi), in_mask=in_mask, labels=labels)
    np.testing.assert_allclose(lira_statistic(target.logits, labels), target_phi, atol=1e-9)
    fitted = A.make_attack("lira_online").fit(reference)
    # the global σ pools residuals about each record's own mean: ≈ 1, not the ≈ 3.3 spread of d
    assert fitted.in_[1][0] == pytest.approx(1.0, abs=0.05) and fitted.out_[1][0] == pytest.approx(1.0, abs=0.05)
    lira = fitted.score(target)
    offline = A.make_attack("lira_offline").fit(reference).score(target)
    loss = A.make_attack("loss").score(target)
    tpr_lira, tpr_loss = tpr_at_fpr(lira, is_member, 0.01), tpr_at_fpr(loss, is_member, 0.01)
    assert tpr_lira > 0.15 and tpr_lira > 3 * tpr_loss
    assert tpr_at_fpr(offline, is_member, 0.01) > 2 * tpr_loss
    assert auc(lira, is_member) > auc(loss, is_member) + 0.1


def test_lira_variance_modes_and_missing_shadows():
    target, reference, is_member = _world(target_memorizes=True, n=200, shadows=4)
    auto = A.make_attack("lira_online").fit(reference)
    assert auto.global_variance_  # 4 < 64 shadows
    assert not A.make_attack("lira_online", variance="per_example").fit(reference).global_variance_
    # records that no shadow trained on (or every shadow did) fall back to global estimates
    mask = reference.in_mask.copy()
    mask[:, :10] = False
    mask[:, 10:20] = True
    lopsided = ReferenceSignals(logits=reference.logits, in_mask=mask, labels=reference.labels)
    for name in ("lira_online", "lira_offline"):
        for variance in ("global", "per_example"):
            scores = A.make_attack(name, variance=variance).fit(lopsided).score(target)
            assert np.all(np.isfinite(scores)) and auc(scores, is_member) > 0.9


def test_lira_identical_shadows_stay_finite():
    target, reference, _ = _world(target_memorizes=True, n=50, shadows=4)
    same = ReferenceSignals(logits=np.repeat(reference.logits[:1], 4, axis=0), in_mask=reference.in_mask,
                            labels=reference.labels)
    assert np.all(np.isfinite(A.make_attack("lira_online").fit(same).score(target)))


def test_rmia_scores_in_unit_interval_and_online_mode():
    target, reference, is_member = _world(target_memorizes=True, n=300)
    for params in ({}, {"offline": False}, {"a": 0.0}, {"a": 1.0}, {"gamma": 2.0}):
        scores = A.make_attack("rmia", **params).fit(reference).score(target)
        assert scores.min() >= 0.0 and scores.max() <= 1.0
        assert auc(scores, is_member) > 0.9
    high = A.make_attack("rmia", gamma=4.0).fit(reference).score(target)
    low = A.make_attack("rmia", gamma=1.0).fit(reference).score(target)
    assert np.all(high <= low)  # a stricter dominance factor never raises the fraction


def test_rmia_offline_formula_on_a_tiny_case():
    # one record, two shadows (one out), population of two; check Pr(x) = ((1+a)/2)·Pr_out + (1−a)/2
    two = lambda p: np.log(np.array([[1 - p, p]]))  # noqa: E731 - logits with p_1 = p
    labels = np.array([1])
    reference = ReferenceSignals(logits=np.stack([two(0.9), two(0.4)]), in_mask=np.array([[True], [False]]),
                                 labels=labels, population_logits=np.stack([np.log([[0.5, 0.5], [0.8, 0.2]])] * 2),
                                 population_labels=np.array([1, 1]))
    target = TargetSignals(logits=two(0.8), labels=labels, population_logits=np.log([[0.5, 0.5], [0.8, 0.2]]),
                           population_labels=np.array([1, 1]))
    a = 0.3
    attack = A.make_attack("rmia", a=a).fit(reference)
    assert np.exp(attack.log_pr_x_[0]) == pytest.approx((1 + a) / 2 * 0.4 + (1 - a) / 2)
    ratio_x = 0.8 / ((1 + a) / 2 * 0.4 + (1 - a) / 2)
    ratio_z = np.array([0.5, 0.2]) / ((1 + a) / 2 * np.array([0.5, 0.2]) + (1 - a) / 2)
    paper = A.make_attack("rmia", a=a, tie_break=False).fit(reference)
    assert paper.score(target)[0] == pytest.approx(np.mean(ratio_x / ratio_z > 1.0))
    # the default keeps the count and adds x's own ratio inside its 1/(m+1) step
    count, within = divmod(attack.score(target)[0] * 3, 1.0)
    assert count == np.sum(ratio_x / ratio_z > 1.0)
    assert within == pytest.approx(ratio_x / (1 + ratio_x))  # σ(log LR_x) = LR_x / (1 + LR_x)
    online = A.make_attack("rmia", offline=False).fit(reference)
    assert np.exp(online.log_pr_x_[0]) == pytest.approx((0.9 + 0.4) / 2)


def test_rmia_tie_break_orders_saturated_records_by_their_ratio():
    # members far above every population record all score 1 under the paper's fraction; the
    # tie-break ranks them by their own ratio, so a member more confident than a non-member wins
    target, reference, _ = _world(target_memorizes=True, n=300)
    paper = A.make_attack("rmia", tie_break=False).fit(reference).score(target)
    ours = A.make_attack("rmia").fit(reference).score(target)
    assert np.sum(paper == paper.max()) > 5  # the world has saturated ties to break
    assert len(np.unique(ours)) == len(ours)
    # every strict order of the paper's score survives
    strict = paper[:, None] < paper[None, :]
    assert np.all((ours[:, None] < ours[None, :])[strict])
    assert ours.min() >= 0.0 and ours.max() < 1.0
    with pytest.raises(ValueError, match="The 'tie_break' parameter of RMIA must be a bool"):
        A.make_attack("rmia", tie_break=1)


def test_rmia_requires_population():
    target, reference, _ = _world(target_memorizes=True, n=40, shadows=2)
    bare_ref = ReferenceSignals(logits=reference.logits, in_mask=reference.in_mask, labels=reference.labels)
    with pytest.raises(ValueError, match="population"):
        A.make_attack("rmia").fit(bare_ref)
    bare_target = TargetSignals(logits=target.logits, labels=target.labels)
    with pytest.raises(ValueError, match="population"):
        A.make_attack("rmia").fit(reference).score(bare_target)


def test_reference_attacks_need_fit_and_matching_records():
    target, reference, _ = _world(target_memorizes=True, n=40, shadows=2)
    with pytest.raises(RuntimeError, match="not fitted"):
        A.make_attack("lira_online").score(target)
    with pytest.raises(ValueError, match="needs reference models"):
        A.make_attack("lira_offline").fit(None)
    other = TargetSignals(logits=target.logits[:-1], labels=target.labels[:-1])
    with pytest.raises(ValueError, match="different audited records"):
        A.make_attack("lira_online").fit(reference).score(other)


def test_registry():
    assert set(A.ATTACKS) == set(ALL)
    assert [A.ATTACKS[n].requires_reference for n in ALL] == [False] * 4 + [True] * 3
    with pytest.raises(ValueError) as error:
        A.make_attack("lira")
    assert "unknown attack 'lira'" in str(error.value)
    assert all(name in str(error.value) for name in ALL)
    with pytest.raises(ValueError, match="already registered"):
        @A.register
        class Again(A.LossAttack):
            name = "loss"
    with pytest.raises(ValueError, match="no parameter.*'gama'.*offline, a, gamma"):
        A.make_attack("rmia", gama=2.0)
    with pytest.raises(ValueError, match="The 'variance' parameter of LiRAOnline must be one of"):
        A.make_attack("lira_online", variance="pooled")
    with pytest.raises(ValueError, match="The 'a' parameter of RMIA must be in"):
        A.make_attack("rmia", a=1.5)
    assert A.make_attack("rmia", a=0.5).get_params() == {"offline": True, "a": 0.5, "gamma": 1.0, "tie_break": True}
    assert A.make_attack("loss").fit(None) is not None and repr(A.make_attack("loss")) == "LossAttack()"
