"""Data-dependent GNMax accounting (Papernot et al. 2018, Thm. 6, Props. 7 and 10) against an independent computation.

The golden ε of the first test was cross-checked against the authors' reference code,
``research/pate_2018/core.py`` of tensorflow/privacy (``compute_logq_gaussian`` and
``rdp_gaussian``). The second recomputes Thm. 6 here in plain floating point, straight
from the paper's formulas, instead of the log-space form the library uses.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from distillguard.privacy.pate_data_dependent import data_dependent_epsilon, gnmax_logq, gnmax_rdp_data_dependent
from distillguard.privacy.pate_rdp import pate_epsilon


def test_data_dependent_epsilon_golden_and_never_above_data_independent():
    """Golden value cross-checked against the authors' reference code (pate_2018 ``core.py``)."""
    alphas = np.array([1.5, 2, 3, 5, 8, 12, 20, 32, 50, 100, 200], dtype=float)
    votes = np.array([[230] + [2] * 10] * 100 + [[150, 100] + [0] * 9] * 20)  # 250 teachers, 11 classes
    got = data_dependent_epsilon(votes, sigma=40.0, delta=1e-5, alphas=alphas)
    assert got["epsilon"] == pytest.approx(0.8509608717094865, rel=1e-9) and got["best_alpha"] == 32.0
    assert got["analysis"] == "data-dependent (not itself private)"
    independent = pate_epsilon(answered=120, queries=120, sigma=40.0, sigma1=None, delta=1e-5, alphas=alphas)
    assert got["epsilon"] < independent["epsilon"]
    # With no consensus the data-dependent bound falls back to α/σ².
    np.testing.assert_allclose(gnmax_rdp_data_dependent(alphas, logq=math.log(0.5), sigma=10.0), alphas / 100)


def _theorem_6(alpha: float, *, q: float, sigma: float) -> float:
    """Papernot et al. 2018, Thm. 6 with μ2 = σ·sqrt(log(1/q)), μ1 = μ2 + 1 (Prop. 10), in plain floats."""
    mu2 = sigma * math.sqrt(math.log(1 / q))
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    a = (1 - q) / (1 - (q * math.exp(eps2)) ** ((mu2 - 1) / mu2))
    b = math.exp(eps1) / q ** (1 / (mu1 - 1))
    return math.log((1 - q) * a ** (alpha - 1) + q * b ** (alpha - 1)) / (alpha - 1)


def test_data_dependent_rdp_equals_theorem_6_computed_directly():
    sigma, votes = 40.0, np.array([230] + [2] * 10, dtype=float)  # 250 teachers, a clear winner
    # Prop. 7: q ≤ Σ_j Pr[N(0, 2σ²) ≥ n_* − n_j] = 10·Φ̄(228 / (√2·40)).
    q = 10 * scipy.stats.norm.sf(228 / (math.sqrt(2) * 40))
    assert gnmax_logq(votes, sigma=sigma) == pytest.approx(math.log(q), rel=1e-12)
    alphas = np.array([2.0, 5.0, 20.0, 50.0, 100.0])  # all below μ1 ≈ 115, where Thm. 6 applies
    expected = [min(_theorem_6(a, q=q, sigma=sigma), a / sigma**2) for a in alphas]
    got = gnmax_rdp_data_dependent(alphas, logq=math.log(q), sigma=sigma)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert (got < alphas / sigma**2).all()  # consensus is cheaper than the data-independent bound


def test_certain_answers_cost_nothing_and_no_answers_give_zero_epsilon():
    alphas = np.array([2.0, 10.0])
    np.testing.assert_array_equal(gnmax_rdp_data_dependent(alphas, logq=-math.inf, sigma=1.0), [0.0, 0.0])
    empty = data_dependent_epsilon(np.zeros((0, 3)), sigma=4.0, delta=1e-5)
    assert empty["epsilon"] == 0.0 and empty["answered"] == 0
