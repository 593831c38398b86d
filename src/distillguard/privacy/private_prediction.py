"""Accounting of private prediction from a partitioned ensemble (PMixED-style, max-divergence ball).

The mechanism (:mod:`distillguard.lm.private_prediction` runs it): the private data are split
into ``n`` disjoint shards, one model per shard. For a query, each shard model's next-token
distribution ``p_i`` is mixed with a public model's ``p_0`` (trained on public text only),
``p̄_i = λ_i p_i + (1 − λ_i) p_0``, with the largest ``λ_i ∈ [0, 1]`` such that

    e^(−b) ≤ p̄_i(y) / p_0(y) ≤ e^b   for every token y            (the ball of radius b)

then one token is **sampled** from ``P = (1/n) Σ_i p̄_i``. PMixED (Flemings et al., NAACL
2024) projects onto a Rényi-divergence ball of order α instead; the max-divergence ball used
here is stricter, and its per-query bound follows in three lines:

Adding or removing one record changes one shard j, so ``P`` and its neighbour ``P'`` share
``A = (1/n) Σ_{i≠j} p̄_i ≥ ((n − 1)/n) e^(−b) p_0`` and differ in ``p̄_j`` versus ``p̄'_j``,
both within the ball. Hence, for every y,

    P(y) / P'(y) ≤ (A + e^b p_0 / n) / (A + e^(−b) p_0 / n) ≤ (n − 1 + e^(2b)) / n,

the last step because the ratio falls as A grows. So one query (one sampled token) is
ε_q-DP with ``ε_q = log(1 + (e^(2b) − 1)/n)`` (:func:`query_epsilon`), whatever the data: the
**data-independent** bound. An ε-DP mechanism is (α, min(ε, αε²/2))-RDP (Mironov 2017,
Prop. 3; Bun & Steinke 2016, Prop. 3.3), RDP composes additively over the T queries, and
:func:`~distillguard.privacy.rdp.rdp_to_dp` converts the total to (ε, δ).

The **data-dependent** cost of one answered query (:func:`data_dependent_query_epsilon`) is
the same ratio evaluated on the realised mixture against the worst neighbour in the ball:
usually far below ε_q, but it depends on the private data and is not itself private (as
PATE's data-dependent analysis); a report must label it so.

What is not covered: a secret repeated in r documents is r records (group privacy: r·ε_q
per query); the leak guard's choice of which transfer documents to keep reads the private
text (under ``leak_policy = "drop"``).
"""

from __future__ import annotations

import math

import numpy as np

from distillguard.privacy.rdp import DEFAULT_ALPHAS, rdp_to_dp


def query_epsilon(radius: float, shards: int) -> float:
    """ε_q = log(1 + (e^(2b) − 1)/n): the pure-DP cost of one sampled token (data-independent)."""
    if radius < 0 or shards < 1:
        raise ValueError(f"radius must be >= 0 and shards >= 1; got {radius!r}, {shards!r}")
    return math.log1p(math.expm1(2 * radius) / shards)


def radius_for_query_epsilon(eps_q: float, shards: int) -> float:
    """The ball radius b whose :func:`query_epsilon` is ``eps_q`` (its inverse)."""
    return 0.5 * math.log1p(shards * math.expm1(eps_q))


def pure_dp_rdp(eps_q: float, alphas: np.ndarray = DEFAULT_ALPHAS) -> np.ndarray:
    """RDP curve of one ε_q-DP mechanism: min(ε_q, α ε_q² / 2) at each order α."""
    alphas = np.asarray(alphas, dtype=np.float64)
    return np.minimum(eps_q, alphas * eps_q ** 2 / 2)


def composed_epsilon(eps_q: float, queries: int, *, delta: float) -> tuple[float, float]:
    """(ε, best α) of ``queries`` ε_q-DP queries composed in RDP, at ``delta``."""
    if queries == 0 or eps_q == 0:
        return 0.0, float("nan")
    return rdp_to_dp(DEFAULT_ALPHAS, queries * pure_dp_rdp(eps_q), delta=delta)


def query_epsilon_for_target(target: float, queries: int, *, delta: float) -> float:
    """The largest ε_q (to 1e-9 relative) whose composition over ``queries`` stays at or below ``target``."""
    if queries < 1:
        raise ValueError(f"queries must be >= 1; got {queries!r}")
    low, high = 0.0, target  # one query at ε_q = target already costs at least target
    for _ in range(100):
        mid = (low + high) / 2
        if composed_epsilon(mid, queries, delta=delta)[0] <= target:
            low = mid
        else:
            high = mid
        if high - low <= 1e-9 * high:
            break
    return low


def mixing_weights(ratio_max: np.ndarray, ratio_min: np.ndarray, radius: float) -> np.ndarray:
    """The largest λ ∈ [0, 1] with e^(−b) ≤ 1 + λ (r − 1) ≤ e^b for every token's r = p_i / p_0.

    Args:
        ratio_max, ratio_min: per query (any shape), max_y and min_y of p_i(y) / p_0(y).
    """
    ratio_max, ratio_min = np.asarray(ratio_max, np.float64), np.asarray(ratio_min, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(ratio_max > 1, np.expm1(radius) / (ratio_max - 1), np.inf)
        down = np.where(ratio_min < 1, -np.expm1(-radius) / (1 - ratio_min), np.inf)
    return np.clip(np.minimum(up, down), 0.0, 1.0)


def data_dependent_query_epsilon(mixed: np.ndarray, public: np.ndarray, radius: float) -> np.ndarray:
    """Per query, max over shards j and tokens y of |log P(y) / P'(y)| for the worst P' that changes shard j.

    Args:
        mixed: (..., n, V) the shards' mixed distributions p̄_i; public: (..., V) p_0.

    Returns:
        (...,) the data-dependent ε of each query (not itself private).
    """
    mixed, public = np.asarray(mixed, np.float64), np.asarray(public, np.float64)[..., None, :]
    n = mixed.shape[-2]
    total = mixed.mean(axis=-2, keepdims=True)  # (..., 1, V)
    low = total - (mixed - math.exp(-radius) * public) / n  # (..., n, V): p̄_j replaced by the ball's floor
    high = total + (math.exp(radius) * public - mixed) / n  # ... and by its ceiling
    with np.errstate(divide="ignore", invalid="ignore"):
        worst = np.maximum(np.log(total / low), np.log(high / total))
    return np.nan_to_num(worst, nan=0.0).max(axis=(-2, -1))
