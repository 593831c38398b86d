"""How well membership scores separate members from non-members: ROC, AUC, TPR at low FPR.

Every function takes ``scores`` of shape ``(n,)`` (higher = more likely member) and a bool
``is_member`` of shape ``(n,)``. A threshold ``t`` predicts "member" for ``score ≥ t``, so
records with tied scores are always on the same side of it: no operating point splits a
tie. "TPR at FPR ≤ x" follows Carlini et al. 2022: the best TPR among thresholds
whose FPR does not exceed ``x``. With ``n_out`` non-members the smallest non-zero FPR is
``1/n_out``, so ``tpr_at_fpr`` returns None for an ``x`` the population cannot resolve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

_FPR_SLACK = 1e-9  # counts ``k ≤ x·n_out`` robustly to x·n_out being a float like 9.999999999
_BATCH_ELEMENTS = 4_000_000  # bootstrap resamples are scored in batches of at most this many scores


def roc(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve with one point per distinct score (``sklearn.metrics.roc_curve``).

    Returns:
        ``(fpr, tpr)``, each ``(k,)``, starting at ``(0, 0)`` and ending at ``(1, 1)``.
    """
    scores, is_member = _check(scores, is_member)
    fpr, tpr, _ = roc_curve(is_member, scores, drop_intermediate=False)
    return fpr, tpr


def auc(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Area under the ROC curve; ties count 1/2 (``sklearn.metrics.roc_auc_score``)."""
    scores, is_member = _check(scores, is_member)
    return float(roc_auc_score(is_member, scores))


def tpr_at_fpr(scores: np.ndarray, is_member: np.ndarray, max_fpr: float) -> float | None:
    """Largest TPR over thresholds whose FPR is ``≤ max_fpr``.

    Returns:
        The TPR, or None when ``max_fpr > 0`` and ``1/n_out > max_fpr`` (too few
        non-members to resolve that FPR). For ``max_fpr = 0`` always a number: the TPR
        reached before the highest-scoring non-member.
    """
    scores, is_member = _check(scores, is_member)
    n_out = int(np.sum(~is_member))
    if not _resolvable(max_fpr, n_out):
        return None
    points = _operating_points(scores[None, :], is_member)
    return float(_tpr_at_fpr_batch(points, max_fpr)[0])


def balanced_accuracy(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Best balanced accuracy ``max_t (TPR + 1 − FPR)/2`` over thresholds (≥ 0.5)."""
    scores, is_member = _check(scores, is_member)
    return float(_balanced_accuracy_batch(_operating_points(scores[None, :], is_member))[0])


def advantage(scores: np.ndarray, is_member: np.ndarray) -> float:
    """Membership advantage ``max_t |TPR − FPR|`` (Yeom et al. 2018, Def. 4, over thresholds)."""
    scores, is_member = _check(scores, is_member)
    return float(_advantage_batch(_operating_points(scores[None, :], is_member))[0])


def bootstrap_ci(statistic_fn: Callable[[np.ndarray, np.ndarray], float], scores: np.ndarray,
                 is_member: np.ndarray, *, n_resamples: int, confidence: float,
                 seed: int) -> tuple[float, float]:
    """Stratified percentile bootstrap interval of ``statistic_fn(scores, is_member)``.

    Members and non-members are resampled separately with replacement, so every resample
    keeps ``n_in`` and ``n_out`` (and with them which FPRs are resolvable).

    Args:
        statistic_fn: ``(scores (n,), is_member (n,)) -> float``.
        scores: ``(n,)`` attack scores.
        is_member: ``(n,)`` bool ground truth.
        n_resamples: number of bootstrap resamples (≥ 1).
        confidence: two-sided level in (0, 1), e.g. 0.95 for the 2.5–97.5 percentiles.
        seed: seed of the resampling; the same seed gives the same interval.

    Returns:
        ``(lo, hi)``.
    """
    scores, is_member = _check(scores, is_member)
    _check_bootstrap(n_resamples, confidence)
    labels = _stratified_labels(is_member)
    values = np.array([statistic_fn(s, labels) for s in _resampled_scores(scores, is_member, n_resamples, seed)])
    return _percentile_interval(values[:, None], confidence)[0]


@dataclass(frozen=True)
class AttackMetrics:
    """Summary of one attack on one target (CONTRACT.md, ``report.json`` ``attacks[]``).

    Attributes:
        auc: ROC AUC.
        auc_ci: bootstrap interval of the AUC, or None without bootstrap.
        balanced_accuracy: best balanced accuracy over thresholds.
        advantage: ``max |TPR − FPR|``.
        tpr_at_fpr: TPR at FPR ≤ x, keyed by x exactly as given (``"0.01"``); None where
            ``n_nonmembers`` cannot resolve x.
        tpr_at_fpr_ci: bootstrap interval per key, or None.
        n_members: number of members scored.
        n_nonmembers: number of non-members scored.
    """

    auc: float
    auc_ci: tuple[float, float] | None
    balanced_accuracy: float
    advantage: float
    tpr_at_fpr: dict[str, float | None]
    tpr_at_fpr_ci: dict[str, tuple[float, float] | None]
    n_members: int
    n_nonmembers: int

    def to_dict(self) -> dict:
        """JSON-able dict (tuples become lists, floats rounded to 6 decimals)."""
        return {
            "auc": _round(self.auc),
            "auc_ci": _round_pair(self.auc_ci),
            "balanced_accuracy": _round(self.balanced_accuracy),
            "advantage": _round(self.advantage),
            "tpr_at_fpr": {k: _round(v) for k, v in self.tpr_at_fpr.items()},
            "tpr_at_fpr_ci": {k: _round_pair(v) for k, v in self.tpr_at_fpr_ci.items()},
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
        }


def summarize(scores: np.ndarray, is_member: np.ndarray, *, fprs: Sequence[str] = ("0.01", "0.001", "0"),
              n_bootstrap: int = 200, confidence: float = 0.95, seed: int = 0) -> AttackMetrics:
    """All metrics of one attack, with stratified bootstrap intervals for AUC and TPR@FPR.

    Args:
        scores: ``(n,)`` attack scores, higher = more likely member.
        is_member: ``(n,)`` bool ground truth.
        fprs: FPR levels as strings (the keys of the result), each in [0, 1).
        n_bootstrap: resamples for the intervals; 0 disables them (CIs are None).
        confidence: two-sided level of the intervals.
        seed: bootstrap seed.
    """
    scores, is_member = _check(scores, is_member)
    levels = _parse_fprs(fprs)
    n_in, n_out = int(is_member.sum()), int((~is_member).sum())
    points = _operating_points(scores[None, :], is_member)
    tprs = {key: (float(_tpr_at_fpr_batch(points, x)[0]) if _resolvable(x, n_out) else None)
            for key, x in levels.items()}
    auc_ci, tpr_ci = None, {key: None for key in levels}
    if n_bootstrap > 0:
        _check_bootstrap(n_bootstrap, confidence)
        resolvable = [key for key, x in levels.items() if _resolvable(x, n_out)]
        intervals = _bootstrap_curve_stats(scores, is_member, [levels[k] for k in resolvable],
                                           n_resamples=n_bootstrap, confidence=confidence, seed=seed)
        auc_ci = intervals[0]
        tpr_ci.update(zip(resolvable, intervals[1:], strict=True))
    return AttackMetrics(auc=auc(scores, is_member), auc_ci=auc_ci,
                         balanced_accuracy=float(_balanced_accuracy_batch(points)[0]),
                         advantage=float(_advantage_batch(points)[0]), tpr_at_fpr=tprs,
                         tpr_at_fpr_ci=tpr_ci, n_members=n_in, n_nonmembers=n_out)


# --- operating points, batched over rows of resampled scores -------------------------------


@dataclass(frozen=True)
class _Points:
    """Cumulative counts after each sorted record; ``last`` marks the end of a tie group."""

    tp: np.ndarray  # (B, n) members among the sorted records up to and including this one
    fp: np.ndarray  # (B, n) non-members likewise
    last: np.ndarray  # (B, n) bool: a threshold can sit right after this position
    n_in: int
    n_out: int


def _operating_points(scores: np.ndarray, is_member: np.ndarray) -> _Points:
    """Operating points of each row of ``scores`` (B, n) against the same ``is_member`` (n,)."""
    order = np.argsort(-scores, axis=1, kind="stable")  # (B, n)
    sorted_scores = np.take_along_axis(scores, order, axis=1)
    member = is_member[order]  # (B, n)
    tp = np.cumsum(member, axis=1)
    fp = np.cumsum(~member, axis=1)
    last = np.ones_like(member)
    last[:, :-1] = sorted_scores[:, :-1] != sorted_scores[:, 1:]
    return _Points(tp=tp, fp=fp, last=last, n_in=int(is_member.sum()), n_out=int((~is_member).sum()))


def _tpr_at_fpr_batch(points: _Points, max_fpr: float) -> np.ndarray:
    allowed = np.floor(max_fpr * points.n_out + _FPR_SLACK)
    ok = points.last & (points.fp <= allowed)
    return np.max(np.where(ok, points.tp, 0), axis=1) / points.n_in  # threshold +inf gives TPR 0


def _youden_batch(points: _Points) -> np.ndarray:
    """``TPR − FPR`` at every threshold, with the all-negative point ``(0, 0)`` as 0."""
    diff = points.tp / points.n_in - points.fp / points.n_out
    return np.where(points.last, diff, 0.0)


def _balanced_accuracy_batch(points: _Points) -> np.ndarray:
    return (1.0 + np.max(_youden_batch(points), axis=1)) / 2.0


def _advantage_batch(points: _Points) -> np.ndarray:
    return np.max(np.abs(_youden_batch(points)), axis=1)


def _auc_batch(scores: np.ndarray, is_member: np.ndarray) -> np.ndarray:
    """Mann–Whitney AUC per row (ties count 1/2); equals ``roc_auc_score``."""
    ranks = rankdata(scores, axis=1)  # (B, n), average ranks for ties
    n_in, n_out = int(is_member.sum()), int((~is_member).sum())
    return (ranks[:, is_member].sum(axis=1) - n_in * (n_in + 1) / 2) / (n_in * n_out)


# --- bootstrap ------------------------------------------------------------------------------


def _stratified_labels(is_member: np.ndarray) -> np.ndarray:
    """Labels of a stratified resample: the ``n_in`` members first, then the non-members."""
    return np.concatenate([np.ones(int(is_member.sum()), bool), np.zeros(int((~is_member).sum()), bool)])


def _resampled_scores(scores: np.ndarray, is_member: np.ndarray, n_resamples: int, seed: int,
                      *, batch: int | None = None):
    """Yield stratified resamples of ``scores``: ``(n,)`` rows, or ``(b, n)`` blocks if ``batch``.

    Rows are drawn one by one from one generator, so resample ``r`` is the same whatever the
    batch size (``bootstrap_ci`` and ``summarize`` agree for a seed).
    """
    rng = np.random.default_rng(seed)
    members, nonmembers = scores[is_member], scores[~is_member]

    def draw() -> np.ndarray:
        index_in = rng.integers(0, members.size, size=members.size)
        index_out = rng.integers(0, nonmembers.size, size=nonmembers.size)
        return np.concatenate([members[index_in], nonmembers[index_out]])

    if batch is None:
        for _ in range(n_resamples):
            yield draw()
        return
    for start in range(0, n_resamples, batch):
        yield np.stack([draw() for _ in range(min(batch, n_resamples - start))])


def _bootstrap_curve_stats(scores: np.ndarray, is_member: np.ndarray, fprs: list[float], *, n_resamples: int,
                           confidence: float, seed: int) -> list[tuple[float, float]]:
    """Intervals of ``[AUC, TPR@fprs[0], ...]`` from one set of resamples (one sort each)."""
    labels = _stratified_labels(is_member)
    batch = max(1, _BATCH_ELEMENTS // scores.size)
    rows = []
    for block in _resampled_scores(scores, is_member, n_resamples, seed, batch=batch):
        points = _operating_points(block, labels)
        rows.append(np.column_stack([_auc_batch(block, labels), *(_tpr_at_fpr_batch(points, x) for x in fprs)]))
    return _percentile_interval(np.concatenate(rows), confidence)


def _percentile_interval(values: np.ndarray, confidence: float) -> list[tuple[float, float]]:
    """Percentile interval of each column of ``values`` (R, k)."""
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail], axis=0)
    return [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]


# --- validation and formatting --------------------------------------------------------------


def _check(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.asarray(is_member)
    if scores.ndim != 1 or is_member.shape != scores.shape:
        raise ValueError(f"scores and is_member must be 1-D arrays of the same length; got shapes "
                         f"{scores.shape} and {is_member.shape}")
    if is_member.dtype != np.bool_:
        if not np.isin(is_member, (0, 1)).all():
            raise ValueError(f"is_member must be bool (or 0/1); got dtype {is_member.dtype}")
        is_member = is_member.astype(bool)
    if np.isnan(scores).any():
        raise ValueError(f"scores contain {int(np.isnan(scores).sum())} NaN values; every record needs a score")
    n_in = int(is_member.sum())
    if n_in == 0 or n_in == is_member.size:
        missing = "members" if n_in == 0 else "non-members"
        raise ValueError(f"no {missing} among the {is_member.size} scored records; "
                         "membership metrics need both members and non-members")
    return scores, is_member


def _resolvable(max_fpr: float, n_out: int) -> bool:
    """Whether FPR ≤ max_fpr is resolvable with n_out non-members (always, for max_fpr = 0)."""
    return max_fpr == 0 or max_fpr * n_out >= 1 - _FPR_SLACK


def _parse_fprs(fprs: Sequence[str]) -> dict[str, float]:
    levels = {}
    for key in fprs:
        try:
            x = float(key)
        except (TypeError, ValueError):
            raise ValueError(f"FPR level {key!r} is not a number; use strings like '0.01'") from None
        if not 0 <= x < 1:
            raise ValueError(f"FPR level {key!r} must be in [0, 1)")
        levels[str(key)] = x
    return levels


def _check_bootstrap(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1; got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _round_pair(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [round(float(pair[0]), 6), round(float(pair[1]), 6)]
