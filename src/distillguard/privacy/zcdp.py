"""Zero-concentrated DP (ρ-zCDP) and its conversion to (ε, δ)-DP.

The DP synthetic transfer set (:mod:`distillguard.data.synthetic`) is accounted in zCDP
(Bun & Steinke 2016), as MST is (McKenna, Miklau & Sheldon 2021):

- a Gaussian mechanism of L2 sensitivity Δ and noise σ is (Δ² / 2σ²)-zCDP;
- an ε₀-DP exponential mechanism is (ε₀² / 8)-zCDP (Cesar & Rothblum 2021, bounded range);
- zCDP composes by adding the ρ's.

ρ-zCDP implies (ε, δ)-DP for every ε ≥ 0 with (Canonne, Kamath & Steinke 2020, Prop. 7)::

    δ = inf_{α > 1}  exp((α − 1)(αρ − ε)) / (α − 1) · (1 − 1/α)^α

which is tighter than the classic ε = ρ + 2√(ρ log(1/δ)) (Bun & Steinke 2016, Prop. 1.3).
The infimum is taken where the derivative of its logarithm, (2α − 1)ρ − ε + log(1 − 1/α),
changes sign (it increases with α), found by bisection. Neighbouring data sets differ by
adding or removing one record.
"""

from __future__ import annotations

import math

_STEPS = 200  # bisection steps: far below float64 resolution on every bracket used here


def zcdp_delta(rho: float, epsilon: float) -> float:
    """δ such that ρ-zCDP implies (ε, δ)-DP (Canonne, Kamath & Steinke 2020, Prop. 7)."""
    if rho < 0 or epsilon < 0:
        raise ValueError(f"rho and epsilon must be >= 0, got rho={rho}, epsilon={epsilon}")
    if rho == 0:
        return 0.0
    lo, hi = 1.0 + 1e-9, max((epsilon + 1) / (2 * rho) + 2, 2.0)
    for _ in range(_STEPS):
        alpha = (lo + hi) / 2
        if (2 * alpha - 1) * rho - epsilon + math.log1p(-1 / alpha) < 0:
            lo = alpha
        else:
            hi = alpha
    alpha = (lo + hi) / 2
    log_delta = (alpha - 1) * (alpha * rho - epsilon) + alpha * math.log1p(-1 / alpha) - math.log(alpha - 1)
    return min(math.exp(log_delta), 1.0)


def zcdp_epsilon(rho: float, delta: float) -> float:
    """The smallest ε such that ρ-zCDP implies (ε, δ)-DP."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if rho == 0:
        return 0.0
    lo, hi = 0.0, rho + 2 * math.sqrt(rho * math.log(1 / delta))  # the classic bound holds at hi
    for _ in range(_STEPS):
        mid = (lo + hi) / 2
        if zcdp_delta(rho, mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def zcdp_rho(epsilon: float, delta: float) -> float:
    """The largest ρ whose ρ-zCDP still implies (ε, δ)-DP: the budget a mechanism may spend."""
    if epsilon <= 0 or not 0 < delta < 1:
        raise ValueError(f"need epsilon > 0 and delta in (0, 1), got epsilon={epsilon}, delta={delta}")
    lo, hi = 0.0, epsilon + 1.0
    for _ in range(_STEPS):
        mid = (lo + hi) / 2
        if zcdp_delta(mid, epsilon) <= delta:
            lo = mid
        else:
            hi = mid
    return lo


def gaussian_rho(sigma: float, sensitivity: float = 1.0) -> float:
    """ρ of one Gaussian mechanism: Δ² / (2σ²)."""
    return sensitivity ** 2 / (2 * sigma ** 2)


def exponential_rho(epsilon: float) -> float:
    """ρ of one ε-DP exponential mechanism: ε² / 8 (Cesar & Rothblum 2021)."""
    return epsilon ** 2 / 8
