"""PATE's noisy aggregation of teacher votes: the mechanisms :mod:`~distillguard.privacy.pate_rdp` bounds.

Papernot et al. 2018 ("Scalable private learning with PATE", ICLR) add Gaussian noise
to the vote histogram (GNMax) and, with Confident-GNMax, answer only the queries on
which the teachers agree. One record lives in exactly one teacher's partition, so
changing it moves one vote: two counts by 1 each (L2 sensitivity √2), the top count by
at most 1.
"""

from __future__ import annotations

import numpy as np


def vote_counts(predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """Histogram of teacher votes per query.

    Args:
        predictions: (T, n) int class predictions of T teachers on n queries.

    Returns:
        (n, C) int64 counts; each row sums to T.
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must be (teachers, queries); got shape {predictions.shape}")
    if predictions.size and (predictions.min() < 0 or predictions.max() >= n_classes):
        raise ValueError(f"predictions must be class indices in [0, {n_classes}); "
                         f"got values in [{predictions.min()}, {predictions.max()}]")
    n = predictions.shape[1]
    flat = (np.arange(n)[None, :] * n_classes + predictions).ravel()  # (T·n,) cell of (query, class)
    return np.bincount(flat, minlength=n * n_classes).reshape(n, n_classes).astype(np.int64)


def plurality(votes: np.ndarray) -> np.ndarray:
    """(n,) noiseless winner of each (n, C) vote row; ties go to the lowest class index."""
    return np.asarray(votes).argmax(axis=1)


def gnmax(votes: np.ndarray, *, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """GNMax aggregator (Papernot et al. 2018, Sec. 4.1): argmax_j {n_j + N(0, σ²)}.

    Args:
        votes: (n, C) vote counts.
        sigma: noise standard deviation; 0 gives :func:`plurality` (no privacy).

    Returns:
        (n,) int64 labels. Exact ties after noise (probability 0 for σ > 0) go to the
        lowest class index, as in :func:`plurality`.
    """
    votes = np.asarray(votes, dtype=np.float64)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0; got {sigma}")
    noisy = votes + rng.normal(0.0, sigma, size=votes.shape) if sigma > 0 else votes  # (n, C)
    return noisy.argmax(axis=1).astype(np.int64)


def confident_gnmax(votes: np.ndarray, *, threshold: float, sigma1: float, sigma2: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Confident-GNMax (Papernot et al. 2018, Alg. 1).

    A query is answered when max_j n_j + N(0, σ1²) ≥ ``threshold``; an answered query
    gets the GNMax label with noise σ2. Threshold noise is drawn for every query first,
    then label noise for the answered ones.

    Args:
        votes: (n, C) vote counts.

    Returns:
        labels: (n,) int64, -1 where unanswered; answered: (n,) bool.
    """
    votes = np.asarray(votes)
    if sigma1 < 0:
        raise ValueError(f"sigma1 must be >= 0; got {sigma1}")
    top = votes.max(axis=1).astype(np.float64)  # (n,)
    noisy_top = top + rng.normal(0.0, sigma1, size=top.shape) if sigma1 > 0 else top
    answered = noisy_top >= threshold
    labels = np.full(len(votes), -1, dtype=np.int64)
    labels[answered] = gnmax(votes[answered], sigma=sigma2, rng=rng)
    return labels, answered


def aggregate(votes: np.ndarray, *, sigma: float, threshold: float | None, sigma_threshold: float | None,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """GNMax, or Confident-GNMax when ``threshold`` is set: (labels (n,), answered (n,) bool).

    Unanswered queries get label -1.
    """
    if threshold is None:
        return gnmax(votes, sigma=sigma, rng=rng), np.ones(len(votes), dtype=bool)
    return confident_gnmax(votes, threshold=threshold, sigma1=sigma_threshold, sigma2=sigma, rng=rng)
