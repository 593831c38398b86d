"""Empirical lower bounds on ε from membership guesses.

The valid bound for ONE trained model is the one-run audit of Steinke, Nasr & Jagielski
(2023, "Privacy Auditing with One (1) Training Run"): ``m`` canaries are each included in
training independently with probability 1/2; the auditor guesses "in" for the ``k_pos``
highest scores and "out" for the ``k_neg`` lowest and abstains on the rest, with
``k_pos, k_neg`` fixed in advance (here: chosen on shadow models, never on the audited
scores). If the training algorithm is (ε, δ)-DP, the number of correct guesses out of
``r`` is stochastically dominated as in their Corollary 5.4, which gives a p-value for
every ε; the reported bound is the largest ε rejected at the requested confidence.

:func:`eps_lower_bound_heuristic` is NOT a bound for one model (see its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import expit
from scipy.stats import binom, binomtest

_EPS_TOL = 1e-9
_EPS_MAX = 1e4


def p_value_one_run(*, guesses_correct: int, guesses_made: int, n_canaries: int, eps: float,
                    delta: float) -> float:
    """p-value of ``≥ v`` correct guesses out of ``r`` under (ε, δ)-DP (Steinke et al. 2023, Cor. 5.4).

    ``p = P[Binomial(r, q) ≥ v] + 2·m·δ·max_{i=1..v} P[v−i ≤ Binomial(r, q) < v]/i`` with
    ``q = e^ε/(1+e^ε)``, the accuracy of ε-DP randomized response (their App. D code,
    ``p_value_DP_audit``). For ``δ = 0`` only the binomial tail remains.

    Args:
        guesses_correct: ``v``, correct guesses.
        guesses_made: ``r``, guesses made (abstentions excluded).
        n_canaries: ``m``, canaries, each included independently with probability 1/2.
        eps: ε of the null hypothesis, ``≥ 0``.
        delta: δ of the null hypothesis, in [0, 1].

    Returns:
        The p-value, capped at 1.
    """
    v, r, m = _check_counts(guesses_correct, guesses_made, n_canaries)
    _check_unit("delta", delta, closed=True)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0; got {eps}")
    q = float(expit(eps))
    tail = float(binom.sf(v - 1, r, q))  # P[Binomial(r, q) ≥ v]
    if delta == 0 or v == 0:
        return min(tail, 1.0)
    below = np.cumsum(binom.pmf(np.arange(v - 1, -1, -1), r, q))  # i-th entry: P[v−i ≤ X < v], i = 1..v
    alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(tail + alpha * delta * 2 * m, 1.0)


def eps_lower_bound_one_run(*, guesses_correct: int, guesses_made: int, n_canaries: int, delta: float,
                            confidence: float = 0.95) -> float:
    """Largest ε whose (ε, δ)-DP null hypothesis the guesses reject (Steinke et al. 2023, App. D).

    Implements the paper's Corollary 5.4 exactly, including its δ term (see
    :func:`p_value_one_run`): with probability ≥ ``confidence`` the training algorithm is
    not (ε, δ)-DP for any ε below the returned value. Found by bisection keeping
    ``p(ε_lo) < 1 − confidence``, and the low end is returned (conservative), as in the
    paper's ``get_eps_audit``. Rejecting ``ε_lo`` also rejects every smaller ε, since
    (ε', δ)-DP with ε' < ε_lo implies (ε_lo, δ)-DP.

    Args:
        guesses_correct: ``v``, correct guesses.
        guesses_made: ``r``, guesses made (``v ≤ r ≤ m``).
        n_canaries: ``m``, canaries, each included independently with probability 1/2.
        delta: δ of the guarantee being audited, in [0, 1].
        confidence: e.g. 0.95 (significance ``1 − confidence``).

    Returns:
        ε lower bound ``≥ 0``; 0 when nothing is rejected (e.g. 50% correct).
    """
    _check_unit("confidence", confidence, closed=False)
    level = 1.0 - confidence

    def p_value(eps: float) -> float:
        return p_value_one_run(guesses_correct=guesses_correct, guesses_made=guesses_made,
                               n_canaries=n_canaries, eps=eps, delta=delta)

    if p_value(0.0) >= level:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(hi) < level:  # p → 1 as ε → ∞ (q → 1), so this ends
        lo, hi = hi, 2.0 * hi
        if hi > _EPS_MAX:
            return lo
    while hi - lo > _EPS_TOL * max(1.0, lo):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if p_value(mid) < level else (lo, mid)
    return lo


def one_run_guesses(scores: np.ndarray, included: np.ndarray, *, k_pos: int, k_neg: int) -> tuple[int, int]:
    """Guess "in" for the ``k_pos`` highest scores, "out" for the ``k_neg`` lowest; count correct.

    Ties are broken by canary index (stable sort), which is independent of the inclusion
    bits as long as the canary order is.

    Args:
        scores: ``(m,)`` attack score per canary, higher = more likely included.
        included: ``(m,)`` bool, whether each canary was in the training set.
        k_pos: number of "in" guesses.
        k_neg: number of "out" guesses; ``k_pos + k_neg ≤ m``.

    Returns:
        ``(correct, made)`` with ``made = k_pos + k_neg``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    included = np.asarray(included, dtype=bool)
    if scores.ndim != 1 or included.shape != scores.shape:
        raise ValueError(f"scores and included must be 1-D of the same length; got {scores.shape} and {included.shape}")
    if k_pos < 0 or k_neg < 0 or k_pos + k_neg > scores.size:
        raise ValueError(f"need k_pos, k_neg >= 0 and k_pos + k_neg <= {scores.size} canaries; "
                         f"got k_pos={k_pos}, k_neg={k_neg}")
    order = np.argsort(-scores, kind="stable")
    guessed_in = order[:k_pos]
    guessed_out = order[scores.size - k_neg:]
    correct = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
    return correct, k_pos + k_neg


def choose_guess_counts(shadow_scores: np.ndarray, shadow_included: np.ndarray, *,
                        candidates: Sequence[tuple[int, int]], delta: float,
                        confidence: float = 0.95) -> tuple[int, int]:
    """Pick ``(k_pos, k_neg)`` maximizing the one-run bound averaged over shadow models.

    The choice uses shadow models only, never the audited model's scores, so the audited
    guesses stay a test with counts fixed in advance (Steinke et al. 2023).

    Args:
        shadow_scores: ``(S, m)`` canary scores from ``S`` shadow models.
        shadow_included: ``(S, m)`` bool inclusion bits of those shadows.
        candidates: ``(k_pos, k_neg)`` pairs to try; ties go to the first.
        delta: δ of the audited guarantee.
        confidence: confidence of the bound.

    Returns:
        The best ``(k_pos, k_neg)``.
    """
    shadow_scores = np.asarray(shadow_scores, dtype=np.float64)
    shadow_included = np.asarray(shadow_included, dtype=bool)
    if shadow_scores.ndim != 2 or shadow_included.shape != shadow_scores.shape:
        raise ValueError(f"shadow_scores and shadow_included must both be (S, m); got {shadow_scores.shape} "
                         f"and {shadow_included.shape}")
    if not candidates:
        raise ValueError("candidates is empty; give at least one (k_pos, k_neg) pair")
    m = shadow_scores.shape[1]
    best, best_value = None, -np.inf
    for k_pos, k_neg in candidates:
        bounds = [
            eps_lower_bound_one_run(guesses_correct=correct, guesses_made=made, n_canaries=m,
                                    delta=delta, confidence=confidence)
            for correct, made in (one_run_guesses(s, inc, k_pos=k_pos, k_neg=k_neg)
                                  for s, inc in zip(shadow_scores, shadow_included, strict=True))
        ]
        if (value := float(np.mean(bounds))) > best_value:
            best, best_value = (int(k_pos), int(k_neg)), value
    return best


def eps_lower_bound_heuristic(*, tpr: float, fpr: float, n_pos: int, n_neg: int, delta: float,
                              confidence: float = 0.95) -> float:
    """HEURISTIC ``log((TPR_lo − δ)/FPR_hi)`` with Clopper–Pearson intervals — NOT a bound here.

    The formula (Jagielski et al. 2020) is a valid ε lower bound only when the
    ``n_pos + n_neg`` trials are independent training runs and the threshold was fixed
    in advance. Applied to many records of ONE model with a threshold read off the same
    scores, neither holds: report it as a heuristic indication of leakage, never as a
    bound; use :func:`eps_lower_bound_one_run` for a bound.

    Args:
        tpr: observed true-positive rate (converted to a count of ``n_pos``).
        fpr: observed false-positive rate (converted to a count of ``n_neg``).
        n_pos: members tested.
        n_neg: non-members tested.
        delta: δ subtracted from the TPR's lower end.
        confidence: level of each two-sided Clopper–Pearson interval.

    Returns:
        ``max(0, log((TPR_lo − δ)/FPR_hi))``.
    """
    _check_unit("confidence", confidence, closed=False)
    _check_unit("delta", delta, closed=True)
    if n_pos < 1 or n_neg < 1:
        raise ValueError(f"n_pos and n_neg must be >= 1; got {n_pos} and {n_neg}")
    for name, rate in (("tpr", tpr), ("fpr", fpr)):
        _check_unit(name, rate, closed=True)
    tpr_lo = binomtest(round(tpr * n_pos), n_pos).proportion_ci(confidence_level=confidence, method="exact").low
    fpr_hi = binomtest(round(fpr * n_neg), n_neg).proportion_ci(confidence_level=confidence, method="exact").high
    if tpr_lo - delta <= 0:
        return 0.0
    return max(0.0, float(np.log((tpr_lo - delta) / fpr_hi)))


def _check_counts(v: int, r: int, m: int) -> tuple[int, int, int]:
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= guesses_correct <= guesses_made <= n_canaries; got {v}, {r}, {m}")
    return int(v), int(r), int(m)


def _check_unit(name: str, value: float, *, closed: bool) -> None:
    ok = 0 <= value <= 1 if closed else 0 < value < 1
    if not ok:
        raise ValueError(f"{name} must be in {'[0, 1]' if closed else '(0, 1)'}; got {value}")
