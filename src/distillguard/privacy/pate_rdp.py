"""Data-independent RDP of PATE's aggregators and the (ε, δ) of a labelling run.

This bound is a differential-privacy guarantee: it depends only on the noise and on
how many queries were asked and answered, not on the private votes.
"""

from __future__ import annotations

import numpy as np

from distillguard.privacy.rdp import DEFAULT_ALPHAS, check_alphas, rdp_to_dp


def gnmax_rdp(alpha: np.ndarray, *, sigma: float) -> np.ndarray:
    """Data-independent RDP of one GNMax answer: ε(α) = α / σ² (Papernot et al. 2018, Prop. 8).

    It is the Gaussian mechanism's α·Δ²/(2σ²) (Mironov 2017, Prop. 7) with L2
    sensitivity Δ = √2 of the vote histogram.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 for a finite RDP bound; got {sigma}")
    return check_alphas(alpha) / sigma**2


def threshold_rdp(alpha: np.ndarray, *, sigma1: float) -> np.ndarray:
    """Data-independent RDP of one Confident-GNMax threshold test: α / (2σ1²).

    The test releases max_j n_j + N(0, σ1²); the top count has sensitivity 1, so this
    is the Gaussian mechanism with Δ = 1, i.e. Prop. 8 of Papernot et al. 2018 at
    σ1·√2 (their reference code, ``compute_rdp_data_independent_threshold``). It is paid
    on every query, answered or not.
    """
    if sigma1 <= 0:
        raise ValueError(f"sigma1 must be > 0 for a finite RDP bound; got {sigma1}")
    return check_alphas(alpha) / (2 * sigma1**2)


def pate_epsilon(*, answered: int, queries: int, sigma: float, sigma1: float | None, delta: float,
                 alphas: np.ndarray | None = None) -> dict:
    """Data-independent (ε, δ) of a PATE labelling run.

    RDP composes additively (Mironov 2017, Prop. 1): ``answered`` GNMax answers cost
    answered·α/σ², and with Confident-GNMax (``sigma1`` set) the threshold test adds
    queries·α/(2σ1²). Then :func:`~distillguard.privacy.rdp.rdp_to_dp`.

    Args:
        answered: labels released (every query for plain GNMax).
        queries: queries asked (= answered when ``sigma1`` is None).
        sigma: GNMax noise σ (σ2 of Confident-GNMax).
        sigma1: threshold noise, or None for plain GNMax.
        alphas: RDP orders to search; default :data:`~distillguard.privacy.rdp.DEFAULT_ALPHAS`.

    Returns:
        {"epsilon", "delta", "best_alpha", "answered", "queries", "sigma", "sigma1",
        "analysis": "data-independent"}.
    """
    if not 0 <= answered <= queries:
        raise ValueError(f"need 0 <= answered <= queries; got answered={answered}, queries={queries}")
    if sigma1 is None and answered != queries:
        raise ValueError(f"plain GNMax answers every query; got answered={answered} of queries={queries} "
                         "(set sigma1 for Confident-GNMax)")
    alphas = DEFAULT_ALPHAS if alphas is None else check_alphas(alphas)
    rdp = answered * gnmax_rdp(alphas, sigma=sigma)
    if sigma1 is not None:
        rdp = rdp + queries * threshold_rdp(alphas, sigma1=sigma1)
    epsilon, best_alpha = rdp_to_dp(alphas, rdp, delta=delta) if queries else (0.0, float("nan"))
    return {"epsilon": epsilon, "delta": delta, "best_alpha": best_alpha, "answered": int(answered),
            "queries": int(queries), "sigma": sigma, "sigma1": sigma1, "analysis": "data-independent"}
