"""Per-record signals computed from a model's logits, and the containers attacks consume.

All functions take float logits of shape ``(..., n, C)`` and integer labels of shape
``(n,)`` (broadcast over the leading dimensions, e.g. ``S`` shadow models) and return
float64 arrays of shape ``(..., n)``. Everything is computed in log space from the logits,
so the signals stay finite and keep their ranking for very confident models
(``z_y = 1000``), where ``softmax`` rounds to exactly 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax(z)`` along the last axis, shape ``(..., C)``."""
    z = np.asarray(logits, dtype=np.float64)
    return z - logsumexp(z, axis=-1, keepdims=True)


def true_class_logprob(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log p_y``: log-probability of each record's label, shape ``(..., n)``.

    Args:
        logits: ``(..., n, C)`` logits.
        labels: ``(n,)`` class indices.
    """
    return _take_label(log_softmax(logits), labels)


def lira_statistic(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's logit-scaled confidence ``φ = log p_y − log(1 − p_y)`` (Carlini et al. 2022, "logit scaling").

    Computed as ``z_y − logsumexp_{i≠y} z_i``, which equals the definition exactly and stays
    finite when ``p_y`` rounds to 1.

    Args:
        logits: ``(..., n, C)`` logits, ``C ≥ 2``.
        labels: ``(n,)`` class indices.

    Returns:
        ``(..., n)`` float64.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.shape[-1] < 2:
        raise ValueError(f"lira_statistic needs at least 2 classes; got logits of shape {z.shape}")
    z_y = _take_label(z, labels)
    return z_y - logsumexp(np.where(_label_mask(z.shape, labels), -np.inf, z), axis=-1)


def entropy(logits: np.ndarray) -> np.ndarray:
    """Shannon entropy ``−Σ_i p_i log p_i`` of the prediction (nats), shape ``(..., n)``."""
    log_p = log_softmax(logits)
    p = np.exp(log_p)
    return -np.sum(np.where(p > 0, p * log_p, 0.0), axis=-1)


def modified_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Modified entropy "Mentr" (Song & Mittal 2021): ``−(1−p_y)·log p_y − Σ_{i≠y} p_i·log(1−p_i)``.

    Low for confident correct predictions, high for confident wrong ones. ``log(1 − p_i)``
    is computed exactly in log space (see :func:`_log1m_softmax`), so no probability
    clipping is needed: the reference code's ``clip(p, 1e-30)`` would make every extremely
    confident record tie, while this keeps their order.

    Args:
        logits: ``(..., n, C)`` logits.
        labels: ``(n,)`` class indices.

    Returns:
        ``(..., n)`` float64, non-negative.
    """
    log_p = log_softmax(logits)
    log1m_p = _log1m_softmax(logits)
    p = np.exp(log_p)
    is_label = _label_mask(log_p.shape, labels)
    true_term = -np.exp(_take_label(log1m_p, labels)) * _take_label(log_p, labels)
    other_terms = -np.sum(np.where(is_label, 0.0, p * log1m_p), axis=-1)
    return true_term + other_terms


@dataclass(frozen=True, eq=False)
class TargetSignals:
    """The audited model's outputs on the audited records (and optionally on a population).

    Attributes:
        logits: ``(n, C)`` logits of the audited model on the audited records.
        labels: ``(n,)`` true class of each audited record.
        population_logits: ``(m, C)`` logits on population records known to be non-members
            of every model (RMIA's ``z``), or None.
        population_labels: ``(m,)`` their classes, or None.
    """

    logits: np.ndarray
    labels: np.ndarray
    population_logits: np.ndarray | None = None
    population_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        logits, labels = _check_pair("logits", self.logits, "labels", self.labels, leading=0)
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "labels", labels)
        population = _check_population(self.population_logits, self.population_labels, leading=0,
                                       n_classes=logits.shape[-1])
        object.__setattr__(self, "population_logits", population[0])
        object.__setattr__(self, "population_labels", population[1])

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def has_population(self) -> bool:
        return self.population_logits is not None


@dataclass(frozen=True, eq=False)
class ReferenceSignals:
    """Outputs of ``S`` shadow/reference models on the same audited records.

    Attributes:
        logits: ``(S, n, C)`` logits of each shadow model on each audited record.
        in_mask: ``(S, n)`` bool, true when record ``i`` was in shadow ``s``'s training set.
        labels: ``(n,)`` true classes (the same records, in the same order, as the target's).
        population_logits: ``(S, m, C)`` shadow logits on the population records, or None.
        population_labels: ``(m,)`` their classes, or None.
    """

    logits: np.ndarray
    in_mask: np.ndarray
    labels: np.ndarray
    population_logits: np.ndarray | None = None
    population_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        logits, labels = _check_pair("logits", self.logits, "labels", self.labels, leading=1)
        in_mask = np.asarray(self.in_mask)
        if in_mask.dtype != np.bool_ or in_mask.shape != logits.shape[:2]:
            raise ValueError(f"in_mask must be a bool array of shape (S, n) = {logits.shape[:2]}; "
                             f"got {in_mask.dtype} {in_mask.shape}")
        population = _check_population(self.population_logits, self.population_labels, leading=1,
                                       n_classes=logits.shape[-1])
        if population[0] is not None and population[0].shape[0] != logits.shape[0]:
            raise ValueError(f"population_logits has {population[0].shape[0]} models but logits has "
                             f"{logits.shape[0]}; both must come from the same S reference models")
        for name, value in (("logits", logits), ("in_mask", in_mask), ("labels", labels),
                            ("population_logits", population[0]), ("population_labels", population[1])):
            object.__setattr__(self, name, value)

    @property
    def n_models(self) -> int:
        return int(self.logits.shape[0])

    @property
    def has_population(self) -> bool:
        return self.population_logits is not None


def _take_label(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``values[..., i, labels[i]]`` for ``values`` of shape ``(..., n, C)``."""
    index = np.broadcast_to(np.asarray(labels)[:, None], (*values.shape[:-1], 1))
    return np.take_along_axis(values, index, axis=-1)[..., 0]


def _label_mask(shape: tuple[int, ...], labels: np.ndarray) -> np.ndarray:
    """Bool ``(..., n, C)``: true at each record's label column."""
    return np.arange(shape[-1]) == np.asarray(labels)[:, None]


def _log1m_softmax(logits: np.ndarray) -> np.ndarray:
    """``log(1 − p_i)`` for every class, shape ``(..., C)``, accurate even when ``p_i → 1``.

    Only the arg-max class can have ``p_i > 1/2``; for it ``log(1 − p_i)`` is
    ``logsumexp_{j≠i} z_j − logsumexp_j z_j``, for the others ``log1p(−p_i)`` is accurate.
    """
    z = np.asarray(logits, dtype=np.float64)
    log_p = log_softmax(z)
    out = np.log1p(-np.minimum(np.exp(log_p), 0.5))
    top = np.argmax(z, axis=-1)[..., None]
    is_top = np.arange(z.shape[-1]) == top
    log_rest = logsumexp(np.where(is_top, -np.inf, z), axis=-1, keepdims=True)
    exact_top = log_rest - logsumexp(z, axis=-1, keepdims=True)
    return np.where(is_top, exact_top, out)


def _check_pair(logits_name: str, logits: np.ndarray, labels_name: str, labels: np.ndarray,
                *, leading: int) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != leading + 2:
        shape = "(S, n, C)" if leading else "(n, C)"
        raise ValueError(f"{logits_name} must have shape {shape}; got {z.shape}")
    if y.ndim != 1 or y.shape[0] != z.shape[-2]:
        raise ValueError(f"{labels_name} must have shape ({z.shape[-2]},) to match {logits_name} "
                         f"{z.shape}; got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{labels_name} must be integer class indices; got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"{labels_name} must lie in [0, {z.shape[-1]}); got values in [{y.min()}, {y.max()}]")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{logits_name} contains NaN or infinite values")
    return z, y.astype(np.int64, copy=False)


def _check_population(logits: np.ndarray | None, labels: np.ndarray | None, *, leading: int,
                      n_classes: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if (logits is None) != (labels is None):
        raise ValueError("population_logits and population_labels must be given together (or both None)")
    if logits is None:
        return None, None
    z, y = _check_pair("population_logits", logits, "population_labels", labels, leading=leading)
    if z.shape[-1] != n_classes:
        raise ValueError(f"population_logits has {z.shape[-1]} classes but logits has {n_classes}")
    return z, y
