"""Utility of teacher and student on the test split: pure functions on logits."""

from __future__ import annotations

import numpy as np


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of (n, C) logits against (n,) class indices."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def agreement(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Fraction of records on which two models predict the same class."""
    return float(np.mean(np.argmax(logits_a, axis=1) == np.argmax(logits_b, axis=1)))


def mean_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(labels)), labels]))
