"""Membership-inference scores for causal LMs from per-token log-probabilities.

The attacks benchmarked by MIMIR (Duan et al. 2024, "Do Membership Inference Attacks
Work on Large Language Models?"), each a pure function of ``n`` texts' token log-probs
(a list of ``(T_i,)`` arrays, natural log); every score is HIGHER = MORE LIKELY MEMBER:

- ``loss`` (Yeom et al. 2018): ``mean_t ln p(x_t)``, i.e. −mean NLL.
- ``zlib`` (Carlini et al. 2021, §6.1): ``−NLL / zlib`` with NLL the mean per token (nats)
  and zlib the compressed length of the text in bytes.
- ``min_k`` (Shi et al. 2024, Min-K% Prob): mean of the ``⌊k·T⌋`` (at least 1) lowest
  token log-probs.
- ``min_k_pp`` (Zhang et al. 2024, Min-K%++, Eq. 4): each token's log-prob standardized
  by the next-token distribution at its position, ``(ln p(x_t) − μ_t)/σ_t`` with
  ``μ_t = Σ_v p_t(v) ln p_t(v)`` and ``σ_t² = Σ_v p_t(v) (ln p_t(v))² − μ_t²``, then the
  mean of the ``⌊k·T⌋`` lowest.
- ``reference`` (Carlini et al. 2021; Mireshghallah et al. 2022): ``−(NLL_target −
  NLL_reference)``, mean NLLs per token, each under its own model's tokenization.

Members and non-members drawn from one distribution give AUCs near 0.5–0.6 on real LLMs
(Duan et al. 2024); these scores feed :func:`distillguard.audit.metrics.summarize`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from distillguard.attack_names import LM_ATTACKS
from distillguard.audit.metrics import summarize
from distillguard.lm.probes.extraction import zlib_length
from distillguard.lm.probes.scoring import text_logprobs

__all__ = [
    "distribution_moments",
    "lm_attack_results",
    "lm_membership_scores",
    "loss_score",
    "min_k_pp_score",
    "min_k_score",
    "reference_score",
    "zlib_score",
]

_MIN_SIGMA = 1e-8  # floor on σ_t: a one-hot next-token distribution has σ = 0


def loss_score(logprobs: Sequence[ArrayLike]) -> np.ndarray:
    """``mean_t ln p(x_t | x_<t)`` per text (−mean NLL), ``(n,)``."""
    return np.array([row.mean() for row in _rows(logprobs)])


def zlib_score(logprobs: Sequence[ArrayLike], texts: Sequence[str]) -> np.ndarray:
    """``−mean NLL / zlib_length(text)`` per text, ``(n,)`` (Carlini et al. 2021)."""
    rows = _rows(logprobs)
    if len(texts) != len(rows):
        raise ValueError(f"got {len(texts)} texts for {len(rows)} log-prob rows")
    return np.array([row.mean() / zlib_length(t) for row, t in zip(rows, texts, strict=True)])


def min_k_score(logprobs: Sequence[ArrayLike], *, k: float = 0.2) -> np.ndarray:
    """Mean of the ``max(1, ⌊k·T⌋)`` lowest token log-probs per text, ``(n,)`` (Shi et al. 2024)."""
    _check_k(k)
    return np.array([_lowest_mean(row, k) for row in _rows(logprobs)])


def min_k_pp_score(logprobs: Sequence[ArrayLike], mu: Sequence[ArrayLike], sigma: Sequence[ArrayLike], *,
                   k: float = 0.2) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024, Eq. 4): mean of the ``k`` lowest ``(ln p(x_t) − μ_t)/σ_t``, ``(n,)``.

    Args:
        logprobs: ``n`` arrays ``(T_i,)``, ``ln p(x_t | x_<t)``.
        mu: ``n`` arrays ``(T_i,)``, ``μ_t`` of the next-token distribution.
        sigma: ``n`` arrays ``(T_i,)``, ``σ_t`` (floored at 1e-8).
        k: fraction of tokens kept, in (0, 1].
    """
    _check_k(k)
    rows, mus, sigmas = _rows(logprobs), _rows(mu, "mu"), _rows(sigma, "sigma")
    if not len(rows) == len(mus) == len(sigmas):
        raise ValueError(f"logprobs, mu and sigma must have one row per text; got {len(rows)}, {len(mus)}, "
                         f"{len(sigmas)}")
    scores = []
    for i, (row, m, s) in enumerate(zip(rows, mus, sigmas, strict=True)):
        if not row.shape == m.shape == s.shape:
            raise ValueError(f"text {i}: logprobs, mu and sigma have shapes {row.shape}, {m.shape}, {s.shape}")
        scores.append(_lowest_mean((row - m) / np.maximum(s, _MIN_SIGMA), k))
    return np.array(scores)


def reference_score(logprobs: Sequence[ArrayLike], reference_logprobs: Sequence[ArrayLike]) -> np.ndarray:
    """``−(NLL_target − NLL_reference)`` with mean NLLs per token, ``(n,)``.

    The two rows of a text may differ in length (different tokenizers).
    """
    target, reference = _rows(logprobs), _rows(reference_logprobs, "reference_logprobs")
    if len(target) != len(reference):
        raise ValueError(f"got {len(reference)} reference rows for {len(target)} texts")
    return loss_score(target) - loss_score(reference)


def distribution_moments(log_probs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``(μ, σ)`` of ``ln p`` under ``p`` itself, over the last axis (Min-K%++ normalizers).

    Args:
        log_probs: ``(..., V)`` log-probabilities of full next-token distributions.

    Returns:
        ``μ = Σ_v p_v ln p_v`` and ``σ = sqrt(Σ_v p_v (ln p_v)² − μ²)``, each ``(...)``.
    """
    logp = np.asarray(log_probs, dtype=np.float64)
    p = np.exp(logp)
    mu = np.where(p > 0, p * logp, 0.0).sum(axis=-1)
    variance = np.where(p > 0, p * (logp - mu[..., None]) ** 2, 0.0).sum(axis=-1)  # = Σ p (ln p)² − μ²
    return mu, np.sqrt(variance)


def lm_membership_scores(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *,
                         attacks: Sequence[str] = LM_ATTACKS, k: float = 0.2,
                         reference_model: torch.nn.Module | None = None, reference_tokenizer: Any = None,
                         batch_size: int = 16, max_length: int | None = None,
                         extra_references: Mapping[str, Sequence[ArrayLike]] | None = None) -> dict[str, np.ndarray]:
    """Every requested LM membership score of each text, higher = more likely member.

    Args:
        model: target causal LM returning ``.logits``.
        tokenizer: its tokenizer.
        texts: ``n`` texts, each at least 2 tokens long.
        attacks: ids from :data:`LM_ATTACKS`; ``reference`` needs ``reference_model``.
        k: fraction of tokens for ``min_k`` and ``min_k_pp``.
        reference_model: the reference model (e.g. trained on public data only).
        reference_tokenizer: its tokenizer; default ``tokenizer``.
        batch_size: texts per forward pass.
        max_length: keep only the first ``max_length`` tokens of each text.
        extra_references: score name → another reference model's per-text log-probabilities
            (``text_logprobs(...).rows()``, computed once for every target): each is scored as
            ``reference`` is, on the target's log-probabilities computed here once.

    Returns:
        Attack id → ``(n,)`` scores.
    """
    unknown = sorted(set(attacks) - set(LM_ATTACKS))
    if unknown:
        raise ValueError(f"unknown LM attack(s) {', '.join(map(repr, unknown))}; valid: {', '.join(LM_ATTACKS)}")
    if "reference" in attacks and reference_model is None:
        raise ValueError("the 'reference' attack needs reference_model (e.g. a model trained on public text only); "
                         "pass one or drop 'reference' from attacks")
    _check_k(k)
    scored = text_logprobs(model, tokenizer, texts, batch_size=batch_size, moments="min_k_pp" in attacks,
                           max_length=max_length)
    rows = scored.rows()
    out: dict[str, np.ndarray] = {}
    for name in attacks:
        if name == "loss":
            out[name] = loss_score(rows)
        elif name == "zlib":
            out[name] = zlib_score(rows, texts)
        elif name == "min_k":
            out[name] = min_k_score(rows, k=k)
        elif name == "min_k_pp":
            out[name] = min_k_pp_score(rows, *scored.moment_rows(), k=k)
        else:
            ref_tok = tokenizer if reference_tokenizer is None else reference_tokenizer
            ref = text_logprobs(reference_model, ref_tok, texts, batch_size=batch_size, max_length=max_length)
            out[name] = reference_score(rows, ref.rows())
    for name, reference_rows in (extra_references or {}).items():
        out[name] = reference_score(rows, reference_rows)
    return out


def lm_attack_results(scores: Mapping[str, ArrayLike], is_member: ArrayLike, *, target: str,
                      population: str = "all", fprs: Sequence[str] = ("0.01", "0.001", "0"),
                      n_bootstrap: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """``report.json`` ``attacks[]`` entries for LM scores (CONTRACT.md), via ``summarize``.

    Args:
        scores: attack id → ``(n,)`` scores (from :func:`lm_membership_scores`).
        is_member: ``(n,)`` bool ground truth.
        target: ``"teacher"`` or ``"student"``.
        population: ``"all"`` or ``"canaries"``.
        fprs: FPR levels for TPR at FPR ≤ x.
        n_bootstrap: bootstrap resamples for the intervals.
        seed: bootstrap seed.
    """
    results = []
    for name, values in scores.items():
        metrics = summarize(np.asarray(values, dtype=np.float64), np.asarray(is_member), fprs=fprs,
                            n_bootstrap=n_bootstrap, seed=seed)
        results.append({"attack": name, "target": target, "population": population, **metrics.to_dict()})
    return results


def _rows(rows: Sequence[ArrayLike], what: str = "logprobs") -> list[np.ndarray]:
    out = [np.asarray(r, dtype=np.float64) for r in rows]
    for i, r in enumerate(out):
        if r.ndim != 1 or r.size == 0:
            raise ValueError(f"{what}[{i}] must be a non-empty 1-D array; got shape {r.shape}")
        if np.isnan(r).any():
            raise ValueError(f"{what}[{i}] contains NaN")
    return out


def _check_k(k: float) -> None:
    if not 0 < k <= 1:
        raise ValueError(f"k must be a fraction in (0, 1]; got {k}")


def _lowest_mean(values: np.ndarray, k: float) -> float:
    count = max(1, int(k * values.size + 1e-9))  # ⌊k·T⌋, robust to 0.29·100 = 28.999…
    return float(np.sort(values)[:count].mean())
