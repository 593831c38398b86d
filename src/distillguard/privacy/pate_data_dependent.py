"""Data-dependent RDP of GNMax (Papernot et al. 2018, Sec. 3): tighter when teachers agree.

The bound depends on the private votes, so the ε it gives is **not itself
differentially private**: report it as an analysis, not a guarantee (Papernot et al.
release a smooth-sensitivity-noised version; that step is not implemented here).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import scipy.stats

from distillguard.privacy.pate_rdp import gnmax_rdp
from distillguard.privacy.rdp import DEFAULT_ALPHAS, check_alphas, rdp_to_dp


def _log1mexp(x: float) -> float:
    """log(1 − eˣ) for x ≤ 0, stable near 0 and for very negative x."""
    if x >= 0:
        return -math.inf
    return math.log(-math.expm1(x)) if x > -math.log(2) else math.log1p(-math.exp(x))


def gnmax_logq(votes: np.ndarray, *, sigma: float) -> float:
    """Upper bound on log Pr[GNMax ≠ plurality] for one (C,) vote row (Papernot et al. 2018, Prop. 7).

    Union bound over the runners-up j: Pr[n_j + Z_j ≥ n_* + Z_*] = Φ̄((n_* − n_j) / (√2 σ)),
    capped at (C − 1)/C.
    """
    votes = np.asarray(votes, dtype=np.float64)
    top = int(votes.argmax())
    gaps = np.delete(votes[top] - votes, top)  # (C-1,)
    logq = float(scipy.special.logsumexp(scipy.stats.norm.logsf(gaps, scale=math.sqrt(2) * sigma)))
    return min(logq, math.log(1 - 1 / len(votes)))


def gnmax_rdp_data_dependent(alpha: np.ndarray, *, logq: float, sigma: float) -> np.ndarray:
    """Data-dependent RDP of one GNMax answer (Papernot et al. 2018, Thm. 6 with Prop. 10).

    With q = Pr[outcome ≠ plurality] and the higher orders μ2 = σ·sqrt(log(1/q)),
    μ1 = μ2 + 1 (at which GNMax is (μi, εi = μi/σ²)-RDP), for α < μ1:

        ε(α) ≤ 1/(α−1) · log((1−q)·A^(α−1) + q·B^(α−1)),
        A = (1−q) / (1 − (q·e^ε2)^((μ2−1)/μ2)),   B = e^ε1 / q^(1/(μ1−1)),

    when the theorem's conditions hold; otherwise, and wherever it is larger, the
    data-independent α/σ² is kept.
    """
    alpha = check_alphas(alpha)
    bound = gnmax_rdp(alpha, sigma=sigma)
    if np.isneginf(logq):
        return np.zeros_like(alpha)  # the answer is certain: no privacy loss
    mu2 = sigma * math.sqrt(-logq)
    mu1 = mu2 + 1
    eps1, eps2 = mu1 / sigma**2, mu2 / sigma**2
    applies = alpha < mu1
    if mu2 <= 1 or not applies.any():
        return bound
    q_small_enough = logq <= (mu2 - 1) * eps2 - mu2 * (math.log(mu1 / (mu1 - 1)) + math.log(mu2 / (mu2 - 1)))
    if not (q_small_enough and -logq > eps2):
        return bound
    log1q = _log1mexp(logq)
    log_a = (alpha - 1) * (log1q - _log1mexp((logq + eps2) * (1 - 1 / mu2)))
    log_b = (alpha - 1) * (eps1 - logq / (mu1 - 1))
    dependent = np.logaddexp(log1q + log_a, logq + log_b) / (alpha - 1)
    return np.where(applies, np.minimum(bound, dependent), bound)


def data_dependent_rdp(votes: np.ndarray, *, sigma: float, alphas: np.ndarray) -> np.ndarray:
    """(K,) data-dependent RDP curve of GNMax answers to the (n, C) ``votes``: the sum over rows."""
    votes, alphas = np.asarray(votes), check_alphas(alphas)
    rdp = np.zeros_like(alphas)
    if len(votes):
        rows, counts = np.unique(votes, axis=0, return_counts=True)  # vote rows repeat a lot
        for row, count in zip(rows, counts):
            rdp += count * gnmax_rdp_data_dependent(alphas, logq=gnmax_logq(row, sigma=sigma), sigma=sigma)
    return rdp


def data_dependent_epsilon(votes: np.ndarray, *, sigma: float, delta: float,
                           alphas: np.ndarray | None = None) -> dict:
    """Data-dependent (ε, δ) of GNMax answers to the (n, C) ``votes`` (Papernot et al. 2018, Sec. 3).

    Sums :func:`gnmax_rdp_data_dependent` over the answered queries; pass only the rows
    that were answered. Confident-GNMax's threshold cost is not included (add
    ``queries·α/(2σ1²)`` from :func:`~distillguard.privacy.pate_rdp.threshold_rdp` if needed).

    Returns:
        {"epsilon", "delta", "best_alpha", "answered", "sigma",
        "analysis": "data-dependent (not itself private)"}.
    """
    votes = np.asarray(votes)
    alphas = DEFAULT_ALPHAS if alphas is None else check_alphas(alphas)
    rdp = data_dependent_rdp(votes, sigma=sigma, alphas=alphas)
    epsilon, best_alpha = rdp_to_dp(alphas, rdp, delta=delta) if len(votes) else (0.0, float("nan"))
    return {"epsilon": epsilon, "delta": delta, "best_alpha": best_alpha, "answered": int(len(votes)),
            "sigma": sigma, "analysis": "data-dependent (not itself private)"}
