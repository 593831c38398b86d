"""Exposure of planted canaries (Carlini et al. 2019, "The Secret Sharer", §4).

A canary is ``prefix + secret`` with the secret drawn uniformly from the space ``R`` of
all strings of its length over an alphabet. Its log-perplexity is
``Px(s) = −log2 Pr(s | prefix)`` (Carlini et al. 2019, Def. 1; total bits over the
secret's tokens, so fillings that tokenize to different numbers of tokens compare
fairly), and its exposure is ``log2|R| − log2 rank(s)`` where ``rank`` counts the
fillings at least as likely as ``s`` (Def. 3).

Enumerating ``R`` is infeasible, so two estimates from ``n`` random fillings (references)
are given (reference: tensorflow/privacy ``secret_sharer/exposures.py``):

- by rank: ``log2(n + 1) − log2(r)`` with ``r = 1 + #{refs below s} + ½·#{refs tied with s}``,
  ``1 ≤ r ≤ n + 1``, so the estimate lies in ``[0, log2(n + 1)]``: it saturates at
  ``log2(n + 1)`` bits once the secret beats every reference. (``(n + 1)/r`` estimates
  ``|R|/rank``; with ``n = |R| − 1``, i.e. every other filling, it is exact.)
  (tensorflow/privacy computes ``log2 n − log2(1 + #{refs below s})``, which differs by at
  most ``log2((n+1)/n)`` and dips below 0 for a secret above every reference.)
- by skew-normal (§4.3, "extrapolation"): ``−log2 F(Px(s))`` with ``F`` the CDF of a
  skew-normal fitted (``scipy.stats.skewnorm.fit``) to the references' log-perplexities;
  it goes past the rank cap.

For a secret that is no more likely than a random filling, ``r/(n+1)`` is uniform, so the
exposure is about ``−log2 U``: mean ``1/ln 2 ≈ 1.44`` bits and ``P(exposure > k) = 2^−k``.
With a subword tokenizer that holds only if the secret tokenizes like a typical filling:
a secret of fewer tokens than most fillings is more likely under any model, even an
untrained one (each token costs about ``log2 V`` bits). Read exposure against the same
canary's exposure under a model that never saw it (e.g. the reference model).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.stats import skewnorm

from distillguard.lm.probes.scoring import continuation_logprobs

__all__ = [
    "ExposureResult",
    "canary_exposure",
    "exposure_by_rank",
    "exposure_by_skew_normal",
    "exposure_from_rank",
    "max_exposure_by_rank",
    "random_fillings",
    "secret_rank",
]


def secret_rank(secret_score: ArrayLike, reference_scores: ArrayLike) -> float | np.ndarray:
    """Rank of each secret among the references by log-perplexity (1 = lowest = most exposed).

    ``r = 1 + #{references < s} + ½·#{references = s}``: ties count half, so a secret tied
    with every reference sits in the middle, not at either end.

    Args:
        secret_score: log-perplexity of one secret (float) or of several, ``(m,)``.
        reference_scores: ``(n,)`` log-perplexities of random fillings.

    Returns:
        A float in ``[1, n + 1]`` (or ``(m,)`` of them).
    """
    secret = np.asarray(secret_score, dtype=np.float64)
    refs = _check_references(reference_scores)
    if np.isnan(secret).any():
        raise ValueError("secret_score is NaN")
    ordered = np.sort(refs)
    below = np.searchsorted(ordered, secret, side="left")
    tied = np.searchsorted(ordered, secret, side="right") - below
    rank = 1.0 + below + 0.5 * tied
    return float(rank) if rank.ndim == 0 else rank


def max_exposure_by_rank(n_references: int) -> float:
    """Largest exposure the rank estimate can show with ``n`` references: ``log2(n + 1)`` bits."""
    if n_references < 1:
        raise ValueError(f"n_references must be at least 1; got {n_references}")
    return math.log2(n_references + 1)


def exposure_from_rank(rank: ArrayLike, *, n_references: int) -> float | np.ndarray:
    """``log2(n + 1) − log2(rank)`` (Carlini et al. 2019, Def. 3, with ``|R|`` estimated as ``n + 1``).

    Args:
        rank: rank(s) in ``[1, n + 1]`` from :func:`secret_rank`.
        n_references: number of references ``n`` the rank was taken among.

    Returns:
        Exposure in bits, in ``[0, log2(n + 1)]``.
    """
    cap = max_exposure_by_rank(n_references)
    r = np.asarray(rank, dtype=np.float64)
    if np.any((r < 1) | (r > n_references + 1)) or np.isnan(r).any():
        raise ValueError(f"rank must be in [1, {n_references + 1}] for {n_references} references; got {rank}")
    exposure = cap - np.log2(r)
    return float(exposure) if exposure.ndim == 0 else exposure


def exposure_by_rank(secret_score: ArrayLike, reference_scores: ArrayLike) -> float | np.ndarray:
    """Exposure estimated by the secret's rank among ``n`` random references.

    Args:
        secret_score: log-perplexity (bits) of the secret, or ``(m,)`` of several secrets.
        reference_scores: ``(n,)`` log-perplexities of random fillings of the same space.

    Returns:
        ``log2(n + 1) − log2(rank)``, in ``[0, log2(n + 1)]`` bits (module docstring).
    """
    refs = _check_references(reference_scores)
    return exposure_from_rank(secret_rank(secret_score, refs), n_references=refs.size)


def exposure_by_skew_normal(secret_score: ArrayLike, reference_scores: ArrayLike) -> float | np.ndarray:
    """Exposure ``−log2 F(s)`` with ``F`` a skew-normal CDF fitted to the references.

    Carlini et al. 2019, §4.3: the references' log-perplexities are close to skew-normal,
    so the fitted tail estimates ranks beyond the sample (no cap at ``log2(n + 1)``).
    Uses ``logcdf`` so far-tail secrets give large finite values rather than ``inf``.

    Args:
        secret_score: log-perplexity (bits) of the secret, or ``(m,)`` of several.
        reference_scores: ``(n,)`` log-perplexities of random fillings (``n ≥ 3``, not all equal).

    Returns:
        Exposure in bits (≥ 0).
    """
    refs = _check_references(reference_scores)
    if refs.size < 3 or np.ptp(refs) == 0:
        raise ValueError(f"a skew-normal fit needs at least 3 distinct reference scores; got {refs.size} "
                         f"with range {np.ptp(refs) if refs.size else 0}")
    params = skewnorm.fit(refs)
    exposure = -skewnorm.logcdf(np.asarray(secret_score, dtype=np.float64), *params) / math.log(2.0)
    exposure = np.maximum(exposure, 0.0)
    return float(exposure) if exposure.ndim == 0 else exposure


def random_fillings(*, alphabet: str, length: int, n: int, exclude: str | None = None,
                    seed: int) -> tuple[list[str], bool]:
    """``n`` uniform random strings of ``length`` over ``alphabet``, excluding ``exclude``.

    When the space has at most ``n + 1`` strings (so ``n`` draws would cover it), every
    string but ``exclude`` is returned instead, in a seeded random order, and the rank
    exposure becomes exact. Otherwise the draws are i.i.d. uniform over the space minus
    ``exclude`` (with replacement, as the rank estimate assumes).

    Returns:
        ``(fillings, exhaustive)``.
    """
    symbols = _check_alphabet(alphabet)
    if length < 1 or n < 1:
        raise ValueError(f"length and n must be at least 1; got length={length}, n={n}")
    rng = np.random.default_rng(seed)
    space = len(symbols) ** length
    if space <= n + 1:
        everything = ["".join(t) for t in itertools.product(symbols, repeat=length)]
        fillings = [s for s in everything if s != exclude]
        return [fillings[i] for i in rng.permutation(len(fillings))], True
    out: list[str] = []
    while len(out) < n:
        draws = rng.integers(0, len(symbols), size=(n - len(out), length))
        out.extend(s for s in ("".join(symbols[j] for j in row) for row in draws) if s != exclude)
    return out, False


@dataclass(frozen=True)
class ExposureResult:
    """Exposure of one canary (contract ``probes[]`` entry ``"exposure"``, minus target/canary ids).

    Attributes:
        exposure_bits: rank estimate, ``log2(n+1) − log2(rank)``.
        exposure_bits_skew_normal: skew-normal extrapolation, ``−log2 F(Px(secret))``.
        max_bits: ``log2(n + 1)``, the most the rank estimate can show.
        rank: the secret's rank among the references (1 = below all of them).
        n_references: number of references scored.
        exhaustive: True when the references are every other filling (rank exposure exact).
    """

    exposure_bits: float
    exposure_bits_skew_normal: float
    max_bits: float
    rank: float
    n_references: int
    exhaustive: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-able entry; holds no secret, only numbers."""
        return {"probe": "exposure", "exposure_bits": round(self.exposure_bits, 6),
                "exposure_bits_skew_normal": round(self.exposure_bits_skew_normal, 6),
                "max_bits": round(self.max_bits, 6), "rank": self.rank,
                "n_references": self.n_references, "exhaustive": self.exhaustive}


def canary_exposure(model: torch.nn.Module, tokenizer: Any, *, prefix: str, secret: str,
                    alphabet: str = "0123456789", n_references: int = 2000, seed: int = 0,
                    batch_size: int = 64) -> ExposureResult:
    """Exposure of ``secret`` after ``prefix`` under ``model`` (Carlini et al. 2019).

    Scores ``prefix + secret`` and ``n_references`` random fillings of the secret's length
    over ``alphabet`` (:func:`random_fillings`), each tokenized jointly with the prefix
    (:func:`~distillguard.lm.probes.scoring.continuation_logprobs`), by log-perplexity in
    bits, then applies :func:`exposure_by_rank` and :func:`exposure_by_skew_normal`.

    Args:
        model: causal LM returning ``.logits``.
        tokenizer: Hugging Face-style tokenizer callable.
        prefix: the canary's prefix, verbatim (including any trailing space).
        secret: the planted secret; every character must be in ``alphabet``.
        alphabet: the characters random fillings are drawn from.
        n_references: number of random fillings.
        seed: seed of the fillings.
        batch_size: sequences per forward pass.
    """
    _check_alphabet(alphabet)
    if not secret or any(c not in alphabet for c in secret):
        raise ValueError(f"the secret must be a non-empty string over the alphabet {alphabet!r}; "
                         f"it has {len(secret)} characters, {sum(c not in alphabet for c in secret)} outside it")
    fillings, exhaustive = random_fillings(alphabet=alphabet, length=len(secret), n=n_references,
                                           exclude=secret, seed=seed)
    scores = continuation_logprobs(model, tokenizer, prefix=prefix, candidates=[secret, *fillings],
                                   batch_size=batch_size).log_perplexity_bits()  # (1 + n,)
    secret_score, refs = scores[0], scores[1:]
    rank = secret_rank(secret_score, refs)
    return ExposureResult(exposure_bits=exposure_from_rank(rank, n_references=refs.size),
                          exposure_bits_skew_normal=float(exposure_by_skew_normal(secret_score, refs)),
                          max_bits=max_exposure_by_rank(refs.size), rank=rank,
                          n_references=int(refs.size), exhaustive=exhaustive)


def _check_references(reference_scores: ArrayLike) -> np.ndarray:
    refs = np.asarray(reference_scores, dtype=np.float64)
    if refs.ndim != 1 or refs.size == 0:
        raise ValueError(f"reference_scores must be a non-empty 1-D array; got shape {refs.shape}")
    if not np.isfinite(refs).all():
        raise ValueError(f"reference_scores contain {int((~np.isfinite(refs)).sum())} non-finite values")
    return refs


def _check_alphabet(alphabet: str) -> list[str]:
    symbols = list(alphabet)
    if len(symbols) < 2 or len(set(symbols)) != len(symbols):
        raise ValueError(f"alphabet must hold at least 2 distinct characters, each once; got {alphabet!r}")
    return symbols
