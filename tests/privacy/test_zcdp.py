"""zCDP accounting of the DP synthetic transfer set: conversions checked against the exact
Gaussian mechanism curve and the classic bound, which are independent of our formula."""

from __future__ import annotations

import math

import pytest
from scipy.stats import norm

from distillguard.privacy.zcdp import exponential_rho, gaussian_rho, zcdp_delta, zcdp_epsilon, zcdp_rho


def _gaussian_exact_delta(sigma: float, epsilon: float) -> float:
    """The exact (ε, δ) curve of one Gaussian mechanism with sensitivity 1 (Balle & Wang 2018, Thm. 8)."""
    return norm.cdf(1 / (2 * sigma) - epsilon * sigma) - math.exp(epsilon) * norm.cdf(-1 / (2 * sigma) - epsilon * sigma)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 10.0])
@pytest.mark.parametrize("epsilon", [0.5, 1.0, 4.0])
def test_the_zcdp_delta_bounds_the_exact_gaussian_curve_and_is_close_to_it(sigma, epsilon):
    exact = _gaussian_exact_delta(sigma, epsilon)
    bound = zcdp_delta(gaussian_rho(sigma), epsilon)
    assert bound >= exact  # a valid conversion never claims less than the mechanism's true δ
    if exact > 1e-12:  # and a useful one is within a small factor of it (the classic bound is not)
        assert bound <= 20 * exact


@pytest.mark.parametrize(("epsilon", "delta"), [(0.5, 1e-6), (1.0, 1e-9), (3.0, 1e-5), (10.0, 1e-5)])
def test_rho_and_epsilon_round_trip_and_beat_the_classic_conversion(epsilon, delta):
    rho = zcdp_rho(epsilon, delta)
    assert zcdp_epsilon(rho, delta) == pytest.approx(epsilon, rel=1e-9)
    assert zcdp_delta(rho, epsilon) <= delta * (1 + 1e-9)
    classic = rho + 2 * math.sqrt(rho * math.log(1 / delta))  # Bun & Steinke 2016, Prop. 1.3
    assert epsilon < classic
    # the classic bound at the same ε allows a smaller ρ: ours spends more of the budget usefully
    classic_rho = (math.sqrt(math.log(1 / delta) + epsilon) - math.sqrt(math.log(1 / delta))) ** 2
    assert rho > classic_rho


def test_mechanism_costs():
    assert gaussian_rho(2.0) == pytest.approx(1 / 8)
    assert gaussian_rho(2.0, sensitivity=2.0) == pytest.approx(1 / 2)
    assert exponential_rho(0.4) == pytest.approx(0.02)
    assert zcdp_epsilon(0.0, 1e-5) == 0.0 and zcdp_delta(0.0, 1.0) == 0.0


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="delta must be in"):
        zcdp_epsilon(0.1, 0.0)
    with pytest.raises(ValueError, match="need epsilon > 0"):
        zcdp_rho(-1.0, 1e-5)
