"""Soft-label defenses: limit what the student can learn from the teacher's outputs.

A student parrots the teacher's memorized labels on transfer points near a member
(Jagielski et al. 2023), so the information in each soft label is what leaks. Each knob
here is a pure function on probabilities (n, C); :func:`defend_soft_labels` chains the
ones a spec asks for and returns *targets*: log-probabilities at T=1 that the KD loss
treats as teacher logits. Because ``log_softmax(log p / T) = log_softmax(z / T)`` when
``p = softmax(z)``, the distillation temperature still means what it meant before.

Classes a knob zeroes out (top-k, rounding, hard labels) get the finite floor
:data:`LOG_FLOOR` rather than ``-inf``: ``exp(floor / T)`` is exactly 0 in float32 for
any sensible T, while ``-inf`` would turn the KL's ``0 · (-inf)`` terms into NaN.

The order is fixed and documented because the knobs do not commute: noise on the
logits first (it is a property of the query), then truncation and rounding (what is
released), then uniform mixing last, so its floor ``λ/C`` on every probability holds.
"""

from __future__ import annotations

import numpy as np

from distillguard.errors import ConfigError

LOG_FLOOR = -1e9  # "log 0" that stays finite through temperature scaling and the KL


def softmax(logits: np.ndarray) -> np.ndarray:
    """(n, C) probabilities, computed in float64 from logits that may hold ``LOG_FLOOR``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def add_logit_noise(logits: np.ndarray, *, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """z + N(0, σ²) per entry: blurs the fine structure of the teacher's confidence."""
    if sigma < 0:
        raise ConfigError(f"logit noise must be >= 0, got {sigma}")
    z = np.asarray(logits, dtype=np.float64)
    return z + sigma * rng.standard_normal(z.shape) if sigma > 0 else z


def truncate_top_k(probs: np.ndarray, *, k: int) -> np.ndarray:
    """Keep each row's k largest probabilities, renormalized; the rest become 0.

    Ties at the k-th value are broken by class index (a stable sort), so the result is
    deterministic.
    """
    n, C = probs.shape
    if not 1 <= k:
        raise ConfigError(f"top_k must be >= 1, got {k}")
    if k >= C:
        return probs
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    kept = np.zeros_like(probs)
    np.put_along_axis(kept, order, np.take_along_axis(probs, order, axis=1), axis=1)
    return kept / kept.sum(axis=1, keepdims=True)


def round_probabilities(probs: np.ndarray, *, step: float) -> np.ndarray:
    """Round every probability to a multiple of ``step``, renormalized (quantized release).

    A row that rounds to all zeros (every class below step/2) keeps its argmax, so the
    released label is never empty.
    """
    if not 0 < step <= 1:
        raise ConfigError(f"rounding step must be in (0, 1], got {step}")
    rounded = np.round(probs / step) * step
    empty = rounded.sum(axis=1) == 0
    if empty.any():
        rounded[empty, probs[empty].argmax(axis=1)] = 1.0
    return rounded / rounded.sum(axis=1, keepdims=True)


def to_hard_labels(probs: np.ndarray) -> np.ndarray:
    """One-hot argmax: the student learns the teacher's decisions only, not its confidence."""
    hard = np.zeros_like(probs)
    hard[np.arange(len(probs)), probs.argmax(axis=1)] = 1.0
    return hard


def mix_with_uniform(probs: np.ndarray, *, weight: float) -> np.ndarray:
    """``(1 − λ)·p + λ/C``: every class keeps at least ``λ/C``; the ranking is unchanged."""
    if not 0 <= weight <= 1:
        raise ConfigError(f"uniform mixing weight must be in [0, 1], got {weight}")
    return (1.0 - weight) * probs + weight / probs.shape[1]


def average_ensemble(logits: np.ndarray) -> np.ndarray:
    """Mean of the teachers' probabilities, as log-probabilities (subsample-and-aggregate).

    With n teachers trained on disjoint partitions, a record reaches one teacher only, so
    changing it moves every averaged probability by at most 1/n (total variation ≤ 1/n).

    Args:
        logits: (n_teachers, n, C) each teacher's logits at T=1.

    Returns:
        (n, C) log of the averaged probabilities (floored at :data:`LOG_FLOOR`).
    """
    logits = np.asarray(logits)
    if logits.ndim != 3 or len(logits) == 0:
        raise ConfigError(f"ensemble logits must be (teachers, n, C), got shape {logits.shape}")
    mean = np.mean([softmax(z) for z in logits], axis=0)
    return to_log(mean)


def to_log(probs: np.ndarray) -> np.ndarray:
    """float32 log-probabilities with zeros at :data:`LOG_FLOOR`."""
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
    return np.where(probs > 0, logp, LOG_FLOOR).astype(np.float32)


def defend_soft_labels(
    logits: np.ndarray,
    *,
    logit_noise: float = 0.0,
    top_k: int | None = None,
    round_to: float | None = None,
    hard: bool = False,
    mix_uniform: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """The student's targets from the teacher's T=1 logits, after the chosen knobs.

    With every knob off this returns ``log_softmax(logits)``, which the KD loss treats
    exactly as the logits themselves.

    Args:
        logits: (n, C) teacher logits at T=1.
        logit_noise: σ of Gaussian noise added to the logits (seeded by ``seed``).
        top_k: keep only the k largest probabilities.
        round_to: round probabilities to multiples of this step.
        hard: release the argmax only (one-hot).
        mix_uniform: λ of the mixture with the uniform distribution, applied last.

    Returns:
        (n, C) float32 log-probabilities.
    """
    z = add_logit_noise(logits, sigma=logit_noise, rng=np.random.default_rng(seed))
    p = softmax(z)
    if hard:
        p = to_hard_labels(p)
    if top_k is not None:
        p = truncate_top_k(p, k=top_k)
    if round_to is not None:
        p = round_probabilities(p, step=round_to)
    if mix_uniform:
        p = mix_with_uniform(p, weight=mix_uniform)
    return to_log(p)


def entropy_bits(targets: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    """(n,) Shannon entropy in bits of ``softmax(targets / T)``: how much a label says."""
    p = softmax(np.asarray(targets, dtype=np.float64) / temperature)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(p), 0.0)
    return -terms.sum(axis=1)
