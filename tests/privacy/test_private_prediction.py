"""The accountant of private prediction (max-divergence ball), checked by hand and by brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distillguard.privacy.private_prediction import (
    composed_epsilon, data_dependent_query_epsilon, mixing_weights, pure_dp_rdp, query_epsilon,
    query_epsilon_for_target, radius_for_query_epsilon,
)


def test_per_query_epsilon_on_a_hand_computed_case():
    # n = 4 shards, b = 0.1: eps_q = log(1 + (e^0.2 - 1) / 4) = log(1.0553506895...) = 0.0538731...
    assert query_epsilon(0.1, 4) == pytest.approx(math.log(1 + (1.2214027581601699 - 1) / 4), rel=1e-12)
    assert query_epsilon(0.1, 4) == pytest.approx(0.0538731, abs=1e-7)
    assert query_epsilon(0.1, 1) == pytest.approx(0.2)  # one shard: the ball's diameter
    assert radius_for_query_epsilon(query_epsilon(0.37, 8), 8) == pytest.approx(0.37, rel=1e-12)


def test_composition_matches_the_closed_form_of_the_zcdp_branch():
    # T eps-DP queries as (eps^2/2)-zCDP each: rho = T eps^2 / 2, and min over alpha of
    # rho*alpha + log(1/delta)/(alpha-1) is rho + 2 sqrt(rho log(1/delta)) (Bun & Steinke 2016).
    eps_q, queries, delta = 0.004, 100_000, 1e-5
    rho = queries * eps_q ** 2 / 2
    expected = rho + 2 * math.sqrt(rho * math.log(1 / delta))
    epsilon, alpha = composed_epsilon(eps_q, queries, delta=delta)
    assert epsilon == pytest.approx(expected, rel=1e-4)
    assert alpha == pytest.approx(1 + math.sqrt(math.log(1 / delta) / rho), rel=1e-2)
    assert pure_dp_rdp(0.5, np.array([1.5, 10.0])).tolist() == [0.1875, 0.5]  # min(eps, alpha eps^2 / 2)


def test_target_epsilon_is_met_and_not_undershot():
    for target, queries in ((8.0, 10_000), (2.0, 500), (1.0, 1)):
        eps_q = query_epsilon_for_target(target, queries, delta=1e-5)
        assert composed_epsilon(eps_q, queries, delta=1e-5)[0] <= target
        assert composed_epsilon(eps_q * 1.001, queries, delta=1e-5)[0] > target


def _ball_ratio(p: np.ndarray, p0: np.ndarray, lam: float) -> np.ndarray:
    return np.log((lam * p + (1 - lam) * p0) / p0)


def test_mixing_weights_are_the_largest_inside_the_ball():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p, p0 = rng.dirichlet(np.full(20, 0.3)), rng.dirichlet(np.full(20, 1.0))
        b = rng.uniform(0.01, 1.0)
        r = p / p0
        lam = float(mixing_weights(r.max(), r.min(), b))
        assert np.abs(_ball_ratio(p, p0, lam)).max() <= b + 1e-12
        if lam < 1:  # any larger weight leaves the ball
            assert np.abs(_ball_ratio(p, p0, min(lam * 1.01, 1.0))).max() > b
    assert float(mixing_weights(np.float64(1.0), np.float64(1.0), 0.1)) == 1.0  # p = p0: no limit


def _mixture(ps: np.ndarray, p0: np.ndarray, b: float) -> np.ndarray:
    r = ps / p0
    lam = mixing_weights(r.max(-1), r.min(-1), b)[:, None]
    return lam * ps + (1 - lam) * p0


def test_changing_one_shard_moves_the_released_distribution_within_the_bound():
    """The defining property: replacing shard j's model by any other changes P by at most eps_q
    (log-ratio, every token), and an adversarial change comes close to it (the bound is not slack)."""
    rng = np.random.default_rng(1)
    worst = 0.0
    for trial in range(200):
        n, vocab, b = int(rng.integers(2, 9)), 30, float(rng.uniform(0.01, 0.5))
        p0 = rng.dirichlet(np.full(vocab, 1.0))
        ps = rng.dirichlet(np.full(vocab, 0.2), size=n)
        other = ps.copy()
        j = int(rng.integers(n))
        other[j] = np.eye(vocab)[rng.integers(vocab)] * 0.999 + 0.001 / vocab if trial % 2 else rng.dirichlet(
            np.full(vocab, 0.05))
        mixed, mixed_other = _mixture(ps, p0, b), _mixture(other, p0, b)
        assert np.array_equal(np.delete(mixed, j, 0), np.delete(mixed_other, j, 0))  # only shard j's term moves
        ratio = np.abs(np.log(mixed.mean(0) / mixed_other.mean(0))).max()
        assert ratio <= query_epsilon(b, n) + 1e-12
        worst = max(worst, ratio / query_epsilon(b, n))
    assert worst > 0.5


def test_data_dependent_cost_never_exceeds_the_data_independent_bound():
    rng = np.random.default_rng(2)
    p0 = rng.dirichlet(np.full(40, 1.0), size=5)  # 5 queries
    ps = rng.dirichlet(np.full(40, 0.3), size=(5, 4))  # 4 shards each
    mixed = np.stack([_mixture(ps[q], p0[q], 0.2) for q in range(5)])  # (5, 4, 40)
    costs = data_dependent_query_epsilon(mixed, p0, 0.2)
    assert costs.shape == (5,) and np.all(costs <= query_epsilon(0.2, 4) + 1e-12) and np.all(costs > 0)
    same = np.broadcast_to(p0[:, None, :], (5, 4, 40))  # every shard at the public model: the ball's centre
    assert np.all(data_dependent_query_epsilon(same, p0, 0.2) < query_epsilon(0.2, 4))
