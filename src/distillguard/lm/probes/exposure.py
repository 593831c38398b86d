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

Two choices make the estimate what an attacker who knows the canary's format would get:

- **The known format is scored.** A canary may declare a ``suffix``, the text that follows
  the secret where it was planted (a sentence's final ``"."``, a line break). The secret
  and every filling are scored as ``prefix + filling + suffix``: a model that memorized
  the secret also knows where it ends, which a wrong filling does not share.
- **References of the secret's token count.** With a subword tokenizer a secret of fewer
  tokens than most fillings is more likely under any model, even an untrained one (each
  token costs about ``log2 V`` bits), and one of more tokens less likely. References are
  therefore drawn by rejection sampling: uniform fillings of the secret's length, kept
  when ``prefix + filling + suffix`` is scored on as many tokens as the true canary
  (:func:`~distillguard.lm.probes.references.draw_references`). Rejection sampling keeps
  the draws uniform over that subset ``R'`` of ``R``, so the rank estimate and its null
  distribution above hold for ``R'`` unchanged, with no model of how bits grow with token
  count (a length-corrected rank needs one, and it differs between models). It only
  tokenizes, so it costs no forward pass. Its bounded fallback, for a secret whose token
  count is rare, is a length-corrected rank (:mod:`.references` says when and how).

Read exposure against the same canary's exposure under a model that never saw it (the
audit's reference model, the same references): what remains of the tokenizer's and the
format's effects cancels there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.stats import skewnorm

from distillguard.lm.probes.references import (
    References,
    check_alphabet,
    draw_references,
    length_corrected_scores,
    random_fillings,
)
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
        length_control: ``"matched"`` (every reference scored on the canary's token count),
            ``"corrected"`` (the fallback: a length-corrected rank) or ``"none"``.
        suffix_scored: True when the canary's known suffix was scored with the secret.
    """

    exposure_bits: float
    exposure_bits_skew_normal: float
    max_bits: float
    rank: float
    n_references: int
    exhaustive: bool
    length_control: str = "none"
    suffix_scored: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able entry; holds no secret, only numbers."""
        return {"probe": "exposure", "exposure_bits": round(self.exposure_bits, 6),
                "exposure_bits_skew_normal": round(self.exposure_bits_skew_normal, 6),
                "max_bits": round(self.max_bits, 6), "rank": self.rank,
                "n_references": self.n_references, "exhaustive": self.exhaustive,
                "length_control": self.length_control, "suffix_scored": self.suffix_scored}


def canary_exposure(model: torch.nn.Module, tokenizer: Any, *, prefix: str, secret: str, suffix: str = "",
                    alphabet: str = "0123456789", n_references: int = 2000, seed: int = 0,
                    batch_size: int = 64, references: References | None = None) -> ExposureResult:
    """Exposure of ``secret`` after ``prefix`` (and before ``suffix``) under ``model`` (Carlini et al. 2019).

    Scores ``prefix + secret + suffix`` and the references in the secret's place, each
    tokenized jointly with the prefix and the suffix
    (:func:`~distillguard.lm.probes.scoring.continuation_logprobs`), by log-perplexity in
    bits, then applies :func:`exposure_by_rank` and :func:`exposure_by_skew_normal` (after
    the length correction when the references are not token-matched).

    Args:
        model: causal LM returning ``.logits``.
        tokenizer: Hugging Face-style tokenizer callable.
        prefix: the canary's prefix, verbatim (including any trailing space).
        secret: the planted secret; every character must be in ``alphabet``.
        suffix: the known text after the secret where it was planted ("" for none).
        alphabet: the characters random fillings are drawn from.
        n_references: number of random fillings.
        seed: seed of the fillings.
        batch_size: sequences per forward pass.
        references: references already drawn for this canary
            (:func:`~distillguard.lm.probes.references.draw_references`), to score several
            models on the same ones without drawing again; None draws them.
    """
    check_alphabet(alphabet)
    if not secret or any(c not in alphabet for c in secret):
        raise ValueError(f"the secret must be a non-empty string over the alphabet {alphabet!r}; "
                         f"it has {len(secret)} characters, {sum(c not in alphabet for c in secret)} outside it")
    if references is None:
        references = draw_references(tokenizer, prefix=prefix, secret=secret, suffix=suffix, alphabet=alphabet,
                                     n=n_references, seed=seed)
    candidates = [secret + suffix, *(f + suffix for f in references.fillings)]
    scores = continuation_logprobs(model, tokenizer, prefix=prefix, candidates=candidates,
                                   batch_size=batch_size).log_perplexity_bits()  # (1 + n,)
    secret_score, refs = scores[0], scores[1:]
    if references.length_control == "corrected":
        refs = length_corrected_scores(refs, references.token_counts, secret_tokens=references.secret_tokens)
    rank = secret_rank(secret_score, refs)
    return ExposureResult(exposure_bits=exposure_from_rank(rank, n_references=refs.size),
                          exposure_bits_skew_normal=float(exposure_by_skew_normal(secret_score, refs)),
                          max_bits=max_exposure_by_rank(refs.size), rank=rank, n_references=int(refs.size),
                          exhaustive=references.exhaustive, length_control=references.length_control,
                          suffix_scored=bool(suffix))


def _check_references(reference_scores: ArrayLike) -> np.ndarray:
    refs = np.asarray(reference_scores, dtype=np.float64)
    if refs.ndim != 1 or refs.size == 0:
        raise ValueError(f"reference_scores must be a non-empty 1-D array; got shape {refs.shape}")
    if not np.isfinite(refs).all():
        raise ValueError(f"reference_scores contain {int((~np.isfinite(refs)).sum())} non-finite values")
    return refs
