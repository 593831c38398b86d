"""One-run ε lower bound (Steinke, Nasr & Jagielski 2023) against direct binomial tails."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from scipy.special import betaincinv, expit, logit

from distillguard.audit.epsilon import (
    choose_guess_counts,
    eps_lower_bound_heuristic,
    eps_lower_bound_one_run,
    one_run_guesses,
    p_value_one_run,
)


def _bound(v, r, m=1000, delta=0.0, confidence=0.95):
    return eps_lower_bound_one_run(guesses_correct=v, guesses_made=r, n_canaries=m, delta=delta,
                                   confidence=confidence)


def _paper_p_value(m, r, v, eps, delta):
    """The loop of the paper's App. D ``p_value_DP_audit``, written out independently."""
    q = 1 / (1 + math.exp(-eps))
    beta = scipy.stats.binom.sf(v - 1, r, q)
    alpha = total = 0.0
    for i in range(1, v + 1):
        total += scipy.stats.binom.pmf(v - i, r, q)
        if total > i * alpha:
            alpha = total / i
    return min(beta + alpha * delta * 2 * m, 1)


def test_all_correct_is_positive_and_grows_with_guesses():
    bounds = [_bound(r, r) for r in (10, 50, 100, 500)]
    assert bounds[0] > 0 and all(a < b for a, b in zip(bounds, bounds[1:]))
    # r correct of r at δ = 0: P[Bin(r, q) ≥ r] = q^r = 0.05  ⇒  q = 0.05^(1/r)
    q = 0.05 ** (1 / 100)
    assert bounds[2] == pytest.approx(math.log(q / (1 - q)), rel=1e-6)


def test_half_correct_gives_zero():
    assert _bound(50, 100) == 0.0
    assert _bound(0, 0) == 0.0
    assert _bound(0, 10) == 0.0


def test_monotone_in_correct_guesses():
    bounds = [_bound(v, 200) for v in range(100, 201, 10)]
    assert all(a <= b for a, b in zip(bounds, bounds[1:])) and bounds[-1] > bounds[0]


def test_matches_direct_binomial_tail_for_delta_zero():
    v, r = 180, 200
    eps = _bound(v, r)
    # at the bound the binomial tail equals the significance level ...
    assert scipy.stats.binom.sf(v - 1, r, expit(eps)) == pytest.approx(0.05, rel=1e-6)
    assert scipy.stats.binom.sf(v - 1, r, expit(eps)) <= 0.05
    # ... and the closed form q* = I⁻¹(v, r − v + 1; 0.05) gives the same ε
    assert eps == pytest.approx(logit(betaincinv(v, r - v + 1, 0.05)), rel=1e-7)
    assert _bound(v, r, confidence=0.99) < eps


def test_p_value_matches_paper_code_with_delta():
    for m, r, v, eps, delta in [(1000, 100, 90, 1.0, 1e-5), (1000, 300, 200, 0.5, 1e-3), (50, 20, 20, 2.0, 0.01)]:
        got = p_value_one_run(guesses_correct=v, guesses_made=r, n_canaries=m, eps=eps, delta=delta)
        assert got == pytest.approx(_paper_p_value(m, r, v, eps, delta), rel=1e-9)


def test_delta_only_lowers_the_bound():
    eps0 = _bound(95, 100, m=1000, delta=0.0)
    eps_small = _bound(95, 100, m=1000, delta=1e-6)
    eps_large = _bound(95, 100, m=1000, delta=1e-4)
    assert eps0 >= eps_small >= eps_large > 0
    p = p_value_one_run(guesses_correct=95, guesses_made=100, n_canaries=1000, eps=eps_large, delta=1e-4)
    assert p < 0.05


def test_one_run_guesses_by_hand():
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.5, 0.2])
    included = np.array([True, False, False, False, True, True])
    # in: 0.9 (right), 0.8 (wrong); out: 0.1 (right), 0.2 (wrong)
    assert one_run_guesses(scores, included, k_pos=2, k_neg=2) == (2, 4)
    assert one_run_guesses(scores, included, k_pos=1, k_neg=0) == (1, 1)
    assert one_run_guesses(scores, included, k_pos=0, k_neg=3) == (2, 3)  # 0.1, 0.2, 0.3
    with pytest.raises(ValueError, match="k_pos \\+ k_neg <= 6"):
        one_run_guesses(scores, included, k_pos=4, k_neg=3)


def test_choose_guess_counts_maximizes_mean_shadow_bound():
    rng = np.random.default_rng(0)
    shadows, m = 4, 400
    included = rng.random((shadows, m)) < 0.5
    # the 40 highest-scoring canaries are perfectly separated, the rest is noise
    scores = rng.normal(0, 1, (shadows, m))
    top = np.argsort(-scores, axis=1)[:, :40]
    for s in range(shadows):
        included[s, top[s]] = True
    candidates = [(10, 0), (40, 0), (100, 0), (100, 100)]
    chosen = choose_guess_counts(scores, included, candidates=candidates, delta=0.0)
    means = [np.mean([_bound(*one_run_guesses(sc, inc, k_pos=kp, k_neg=kn), m=m)
                      for sc, inc in zip(scores, included)]) for kp, kn in candidates]
    assert chosen == candidates[int(np.argmax(means))] == (40, 0)


def test_heuristic_is_below_the_naive_ratio():
    h = eps_lower_bound_heuristic(tpr=0.5, fpr=0.01, n_pos=1000, n_neg=1000, delta=1e-5)
    assert 0 < h < math.log(0.5 / 0.01)
    assert eps_lower_bound_heuristic(tpr=0.3, fpr=0.3, n_pos=1000, n_neg=1000, delta=0.0) == 0.0
    assert eps_lower_bound_heuristic(tpr=0.1, fpr=0.0, n_pos=100, n_neg=100, delta=0.0) > 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"guesses_correct": 11, "guesses_made": 10, "n_canaries": 100}, "guesses_correct <= guesses_made"),
    ({"guesses_correct": 5, "guesses_made": 200, "n_canaries": 100}, "<= n_canaries"),
    ({"guesses_correct": 5, "guesses_made": 10, "n_canaries": 100, "delta": 2.0}, "delta must be in"),
    ({"guesses_correct": 5, "guesses_made": 10, "n_canaries": 100, "confidence": 1.0}, "confidence must be in"),
])
def test_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        eps_lower_bound_one_run(**{"delta": 0.0, **kwargs})
