"""Data-independent PATE accounting: golden ε from closed forms and from an independent RDP implementation.

GNMax is (α, α/σ²)-RDP per answer (Papernot et al. 2018, Prop. 8), the threshold test
(α, α/(2σ1²)); composition adds them (Mironov 2017, Prop. 1) and the code converts with
ε = min_α rdp(α) + log(1/δ)/(α − 1) (Mironov 2017, Prop. 3). For plain GNMax the minimum
over a continuous α has the closed form q/σ² + 2·sqrt(q·log(1/δ))/σ at
α* = 1 + σ·sqrt(log(1/δ)/q), and the curve itself is the full-batch sampled Gaussian's of
Opacus (noise multiplier σ/√2, sensitivity √2 folded in), computed by Opacus' own
``compute_rdp`` (Mironov et al. 2019) as an independent check. No published
data-independent PATE ε was found to cite: Papernot et al. report data-dependent ones.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from distillguard.privacy.pate_rdp import gnmax_rdp, pate_epsilon, threshold_rdp
from distillguard.privacy.pate_record import pate_privacy_record, recompute_pate_epsilon
from distillguard.privacy.rdp import rdp_to_dp


def test_gnmax_and_threshold_rdp_are_gaussian_mechanisms():
    alpha = np.array([2.0, 10.0, 100.0])
    np.testing.assert_allclose(gnmax_rdp(alpha, sigma=4.0), alpha / 16)  # Δ = √2: α·2/(2σ²)
    np.testing.assert_allclose(threshold_rdp(alpha, sigma1=4.0), alpha / 32)  # Δ = 1: α/(2σ²)
    with pytest.raises(ValueError, match="orders must be > 1"):
        gnmax_rdp(np.array([1.0]), sigma=1.0)


@pytest.mark.parametrize(("queries", "sigma", "delta"), [(1000, 40.0, 1e-5), (100, 10.0, 1e-6), (5000, 100.0, 1e-5)])
def test_pate_epsilon_equals_the_closed_form_composition(queries, sigma, delta):
    """Golden: min_α q·α/σ² + log(1/δ)/(α−1) is at α* = 1 + σ·sqrt(log(1/δ)/q)."""
    got = pate_epsilon(answered=queries, queries=queries, sigma=sigma, sigma1=None, delta=delta)
    log_inv_delta = math.log(1 / delta)
    alpha_star = 1 + sigma * math.sqrt(log_inv_delta / queries)
    eps_star = queries * alpha_star / sigma**2 + log_inv_delta / (alpha_star - 1)
    assert eps_star == pytest.approx(queries / sigma**2 + 2 * math.sqrt(queries * log_inv_delta) / sigma)
    assert got["epsilon"] == pytest.approx(eps_star, rel=1e-5) and got["epsilon"] >= eps_star
    assert got["best_alpha"] == pytest.approx(alpha_star, rel=1e-2)
    assert got["analysis"] == "data-independent" and got["queries"] == got["answered"] == queries


def test_pate_epsilon_golden_number_and_threshold_cost():
    # 1000 GNMax answers at σ = 40, δ = 1e-5: 1000/1600 + 2·sqrt(1000·ln 1e5)/40 = 5.98991507
    plain = pate_epsilon(answered=1000, queries=1000, sigma=40.0, sigma1=None, delta=1e-5)
    assert plain["epsilon"] == pytest.approx(5.98991507, abs=1e-5)
    # Confident-GNMax: 300 answers of 1000 queries, σ1 = 150: rdp(α) = α·(300/40² + 1000/(2·150²))
    conf = pate_epsilon(answered=300, queries=1000, sigma=40.0, sigma1=150.0, delta=1e-5)
    rate = 300 / 40**2 + 1000 / (2 * 150**2)
    assert conf["epsilon"] == pytest.approx(rate + 2 * math.sqrt(rate * math.log(1e5)), rel=1e-5)
    assert conf["epsilon"] < plain["epsilon"] and conf["sigma1"] == 150.0
    # An explicit grid is used as given.
    alphas = np.array([2.0, 4.0, 8.0])
    eps, best = rdp_to_dp(alphas, 1000 * alphas / 40**2, delta=1e-5)
    assert best == 4.0 and eps == pytest.approx(1000 * 4 / 1600 + math.log(1e5) / 3)  # α = 4 beats 2 and 8


def test_pate_epsilon_rejects_inconsistent_counts():
    with pytest.raises(ValueError, match="answered <= queries"):
        pate_epsilon(answered=5, queries=3, sigma=1.0, sigma1=1.0, delta=1e-5)
    with pytest.raises(ValueError, match="set sigma1"):
        pate_epsilon(answered=2, queries=3, sigma=1.0, sigma1=None, delta=1e-5)


@pytest.mark.parametrize(("queries", "sigma"), [(1000, 40.0), (286, 40.0), (50, 5.0)])
def test_gnmax_rdp_curve_is_opacus_full_batch_gaussian(queries, sigma):
    """Opacus' sampled-Gaussian RDP at q = 1 and noise multiplier σ/√2, over its own orders."""
    analysis = pytest.importorskip("opacus.accountants.analysis.rdp")
    orders = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=float)
    independent = analysis.compute_rdp(q=1.0, noise_multiplier=sigma / math.sqrt(2), steps=queries, orders=orders)
    np.testing.assert_allclose(queries * gnmax_rdp(orders, sigma=sigma), independent, rtol=1e-12)
    expected = float(np.min(independent + math.log(1e5) / (orders - 1)))  # the classic conversion, by hand
    got = pate_epsilon(answered=queries, queries=queries, sigma=sigma, sigma1=None, delta=1e-5, alphas=orders)
    assert got["epsilon"] == pytest.approx(expected, rel=1e-12)


def test_privacy_record_epsilon_is_recomputable_from_its_counts():
    votes = np.array([[9, 1, 0], [5, 5, 0], [0, 2, 8], [3, 3, 4]])
    answered = np.array([True, False, True, True])
    record = pate_privacy_record(votes, answered, teachers=10, sigma=40.0, threshold=7.0, sigma_threshold=150.0,
                                 delta=1e-5, data_dependent=True)
    assert record["aggregator"] == "confident-gnmax" and (record["answered"], record["queries"]) == (3, 4)
    assert recompute_pate_epsilon(record) == record["epsilon"]
    rate = 3 / 40**2 + 4 / (2 * 150**2)
    assert record["epsilon"] == pytest.approx(rate + 2 * math.sqrt(rate * math.log(1e5)), rel=1e-5)
    assert record["data_dependent"]["epsilon"] <= record["epsilon"] * (1 + 1e-9)
