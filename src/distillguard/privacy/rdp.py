"""Rényi-DP orders and the conversion of an RDP curve to (ε, δ) (Mironov 2017)."""

from __future__ import annotations

import math

import numpy as np

#: RDP orders searched by default: 1 + a log grid over (1e-3, 1e5), dense enough that the
#: grid minimum is within ~1e-5 (relative) of the continuous one for smooth curves.
DEFAULT_ALPHAS = 1.0 + np.geomspace(1e-3, 1e5, 4000)


def check_alphas(alpha: np.ndarray) -> np.ndarray:
    """``alpha`` as float64, after checking every order is > 1 (RDP is undefined at α ≤ 1)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    if np.any(alpha <= 1):
        raise ValueError(f"RDP orders must be > 1; got min {alpha.min()}")
    return alpha


def rdp_to_dp(alphas: np.ndarray, rdp: np.ndarray, *, delta: float) -> tuple[float, float]:
    """(ε, best α) with ε = min_α rdp(α) + log(1/δ) / (α − 1) (Mironov 2017, Prop. 3).

    The classic conversion, as in Papernot et al. 2018; the improved one of Balle et al.
    2020 (used by Opacus' RDP accountant) is slightly tighter, so ε here is an upper bound
    on what Opacus would report for the same curve.
    """
    alphas, rdp = check_alphas(alphas), np.asarray(rdp, dtype=np.float64)
    if alphas.shape != rdp.shape:
        raise ValueError(f"alphas and rdp must have one shape; got {alphas.shape} and {rdp.shape}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1); got {delta}")
    eps = rdp + math.log(1 / delta) / (alphas - 1)  # (K,)
    best = int(np.argmin(eps))
    return float(eps[best]), float(alphas[best])
