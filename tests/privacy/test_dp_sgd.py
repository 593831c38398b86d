"""DP-SGD accounting: golden ε and σ against Opacus' own test values and closed forms.

Golden values, each with its source:

* Opacus 1.6.0, ``opacus/tests/accountants_test.py`` (``AccountingTest``): σ = 1.5,
  q = 0.04, 90 epochs, δ = 1e-5 gives ε = 7.32911117143 with the RDP accountant
  (``test_rdp_accountant``, ``int(90 / 0.04)`` = 2250 steps) and 6.777395712150674 with
  PRV (``test_prv_accountant``, ``int(90 // 0.04)`` = 2249 steps); solving σ for ε = 8
  over 90 epochs gives 1.416 (RDP, ``test_get_noise_multiplier_rdp_epochs``) and
  1.34765625 (PRV, ``test_get_noise_multiplier_prv_epochs``).
* Sampling rate 1, computed here independently of Opacus: T Gaussian steps of noise
  multiplier σ are α·T/(2σ²)-RDP (Mironov 2017, Prop. 7), which Opacus converts with
  Balle et al. 2020 (Thm. 21) over its default orders; and their exact (ε, δ) curve is
  the Gaussian mechanism's with μ = √T/σ (Balle & Wang 2018, Thm. 8), which the PRV
  accountant must bound from above within its ε error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

pytest.importorskip("opacus")

from distillguard.errors import ConfigError  # noqa: E402
from distillguard.privacy.dp_sgd import dp_sgd_epsilon, noise_multiplier_for_epsilon, recompute_epsilon  # noqa: E402

#: Opacus' RDPAccountant.DEFAULT_ALPHAS (opacus/accountants/rdp.py).
OPACUS_ORDERS = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=float)


@pytest.mark.parametrize(("accountant", "steps", "golden"), [
    ("rdp", 2250, 7.32911117143),  # opacus/tests/accountants_test.py::test_rdp_accountant
    ("prv", 2249, 6.777395712150674),  # opacus/tests/accountants_test.py::test_prv_accountant
])
def test_epsilon_matches_opacus_golden_values(accountant, steps, golden):
    eps = dp_sgd_epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=steps, delta=1e-5, accountant=accountant)
    assert eps == pytest.approx(golden, abs=1e-7)  # assertAlmostEqual's 7 places


@pytest.mark.parametrize(("accountant", "golden", "places"), [
    ("rdp", 1.416, 4),  # test_get_noise_multiplier_rdp_epochs
    ("prv", 1.34765625, 7),  # test_get_noise_multiplier_prv_epochs
])
def test_noise_multiplier_for_epsilon_matches_opacus_golden_values(accountant, golden, places):
    sigma = noise_multiplier_for_epsilon(target_epsilon=8.0, delta=1e-5, sample_rate=0.04, epochs=90,
                                         accountant=accountant)
    assert sigma == pytest.approx(golden, abs=0.5 * 10**-places)


@pytest.mark.parametrize(("sigma", "steps", "delta"), [(5.0, 10, 1e-5), (2.0, 3, 1e-6), (20.0, 1000, 1e-5)])
def test_full_batch_rdp_equals_the_gaussian_closed_form(sigma, steps, delta):
    """q = 1: ε = min_α T·α/(2σ²) − (log δ + log α)/(α − 1) + log((α − 1)/α), over Opacus' orders."""
    rdp = steps * OPACUS_ORDERS / (2 * sigma**2)
    closed = rdp - (math.log(delta) + np.log(OPACUS_ORDERS)) / (OPACUS_ORDERS - 1) + np.log(
        (OPACUS_ORDERS - 1) / OPACUS_ORDERS)
    got = dp_sgd_epsilon(noise_multiplier=sigma, sample_rate=1.0, steps=steps, delta=delta, accountant="rdp")
    assert got == pytest.approx(float(closed.min()), rel=1e-12)


def test_full_batch_golden_number():
    """σ = 5, 10 full-batch steps, δ = 1e-5: the closed form above gives 2.8136532471298397 (at α = 7.9)."""
    got = dp_sgd_epsilon(noise_multiplier=5.0, sample_rate=1.0, steps=10, delta=1e-5, accountant="rdp")
    assert got == pytest.approx(2.8136532471298397, rel=1e-12)


def _analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """ε with δ(ε) = Φ(μ/2 − ε/μ) − e^ε·Φ(−μ/2 − ε/μ) (Balle & Wang 2018, Thm. 8)."""
    def excess(eps: float) -> float:
        return (scipy.stats.norm.cdf(mu / 2 - eps / mu) - math.exp(eps) * scipy.stats.norm.cdf(-mu / 2 - eps / mu)
                - delta)

    return scipy.optimize.brentq(excess, 0.0, 50.0, xtol=1e-14)


def test_full_batch_prv_bounds_the_exact_gaussian_epsilon():
    """σ = 5, 10 steps, δ = 1e-5: the exact ε is 2.594383380527604; PRV may overshoot by its error (0.01 a side)."""
    exact = _analytic_gaussian_epsilon(math.sqrt(10) / 5.0, 1e-5)
    assert exact == pytest.approx(2.594383380527604, rel=1e-9)
    with np.errstate(divide="ignore"):  # Opacus' PRV takes log(1 − q) = log 0 at q = 1
        prv = dp_sgd_epsilon(noise_multiplier=5.0, sample_rate=1.0, steps=10, delta=1e-5, accountant="prv")
    assert exact <= prv <= exact + 0.02
    assert prv < dp_sgd_epsilon(noise_multiplier=5.0, sample_rate=1.0, steps=10, delta=1e-5, accountant="rdp")


def test_no_step_is_free_and_no_noise_is_unbounded():
    assert dp_sgd_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5, accountant="rdp") == 0.0
    assert dp_sgd_epsilon(noise_multiplier=0.0, sample_rate=0.1, steps=5, delta=1e-5, accountant="prv") == math.inf


def test_recompute_epsilon_reads_a_privacy_record():
    record = {"noise_multiplier": 1.5, "sample_rate": 0.04, "steps": 2250, "delta": 1e-5, "accountant": "rdp",
              "epsilon": 7.3, "mechanism": "dp-sgd"}
    assert recompute_epsilon(record) == pytest.approx(7.32911117143, abs=1e-7)
    more_noise = recompute_epsilon({**record, "noise_multiplier": 3.0})
    assert more_noise < recompute_epsilon(record)  # ε falls as σ grows


def test_unreachable_target_names_the_budget_and_the_fix():
    with pytest.raises(ConfigError, match=r"cannot reach ε = 0.001 at δ = 1e-05 in 100 epochs.*raise epsilon"):
        noise_multiplier_for_epsilon(target_epsilon=1e-3, delta=1e-5, sample_rate=1.0, epochs=100, accountant="rdp")
