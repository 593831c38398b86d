"""LiRA's per-record Gaussian fits on shadow statistics (Carlini et al. 2022): pure maths.

Two fits: means with a pooled or per-record σ (:func:`fit_gaussians`), and the reference
code's fixed variance with median centres (:func:`fit_medians`, tensorflow/privacy
``research/mi_lira_2021/plot.py``). Split from :mod:`distillguard.audit.attacks`, which
holds the attacks that use them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_STD", "fit_gaussians", "fit_medians", "truncate"]

MIN_STD = 1e-4  # floor on fitted standard deviations of φ (identical shadows give σ = 0)


def fit_gaussians(phi: np.ndarray, mask: np.ndarray, *, global_variance: bool,
                   side: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-record mean and standard deviation of ``phi[mask]`` along the model axis.

    Args:
        phi: ``(S, n)`` statistic of each shadow on each record.
        mask: ``(S, n)`` bool, which pairs belong to this side (in or out).
        global_variance: use one pooled σ for all records.
        side: "in" or "out", for messages.

    Returns:
        ``(mu, sigma)``, each ``(n,)``.
    """
    count = mask.sum(axis=0)  # (n,)
    if not count.any():
        raise ValueError(f"no shadow model has any audited record {side.upper()}; LiRA needs {side}-shadows "
                         f"(check ReferenceSignals.in_mask)")
    values = phi[mask]
    global_mean, total_std = float(values.mean()), float(values.std())
    mean = np.where(count > 0, np.sum(np.where(mask, phi, 0.0), axis=0) / np.maximum(count, 1), global_mean)
    residual = np.where(mask, phi - mean, 0.0)
    dof = int(count.sum() - np.count_nonzero(count))
    pooled_std = float(np.sqrt(np.sum(residual**2) / dof)) if dof > 0 else total_std
    if global_variance:
        std = np.full(phi.shape[1], pooled_std)
    else:
        per_example = np.sqrt(np.sum(residual**2, axis=0) / np.maximum(count - 1, 1))
        std = np.where(count >= 2, per_example, pooled_std)
    std = np.where(count > 0, std, total_std)
    return mean, np.maximum(std, MIN_STD)


def fit_medians(phi: np.ndarray, mask: np.ndarray, *, spread: np.ndarray,
                 side: str) -> tuple[np.ndarray, np.ndarray]:
    """The reference code's fixed-variance fit: per-record median of ``phi[mask]``, σ = ``np.std(spread)``.

    As the reference, every record keeps only its first ``k`` values in shadow order, ``k``
    the smallest count of any record (records with none are centred on the median of all).
    """
    if not mask.any():
        raise ValueError(f"no shadow model has any audited record {side.upper()}; LiRA needs {side}-shadows "
                         f"(check ReferenceSignals.in_mask)")
    kept = truncate(mask)
    has = kept.any(axis=0)
    centre = np.full(phi.shape[1], float(np.median(phi[kept])))
    centre[has] = np.nanmedian(np.where(kept, phi, np.nan)[:, has], axis=0)
    return centre, np.full(phi.shape[1], max(float(np.std(spread)), MIN_STD))


def truncate(mask: np.ndarray) -> np.ndarray:
    """``mask`` keeping, per record (column), its first ``k`` entries, ``k`` the smallest non-zero count."""
    count = mask.sum(axis=0)
    if not count.any():
        return mask
    return mask & (np.cumsum(mask, axis=0) <= int(count[count > 0].min()))
