"""References for canary exposure: random fillings of the canary's token count.

Exposure ranks the true secret among random fillings of the same space
(:mod:`.exposure`). With a subword tokenizer a filling's log-perplexity grows with the
number of tokens it takes, so a secret that tokenizes into fewer tokens than most
fillings looks exposed under any model, and one that takes more looks safe. The
references are therefore controlled for length:

- **Token-matched (the rule).** Uniform fillings of the secret's character length are
  drawn and kept when ``prefix + filling + suffix``, tokenized jointly, is scored on as
  many tokens as ``prefix + secret + suffix`` (rejection sampling). The kept ones are
  uniform over that token-count class ``R'``, so the rank estimate and its null
  distribution hold for ``R'`` as they hold for ``R``, and nothing is assumed about how
  bits grow with tokens. Only tokenization is spent, at most
  :data:`MAX_DRAWS_PER_REFERENCE` draws per reference wanted. A space small enough to
  enumerate is enumerated (exhaustive).
- **Length-corrected (the bounded fallback).** When a secret's token count is so rare
  that the draws yield fewer than ``n`` matches (a class under about 1/20 of the space),
  the first ``n`` draws are used unmatched, and each reference's log-perplexity is moved
  to the secret's token count along the least-squares line of log-perplexity on token
  count, fitted per model on those references (:func:`length_corrected_scores`). This
  assumes a per-token cost that is constant across counts; it is reported as
  ``length_control = "corrected"``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from distillguard.lm.probes.scoring import continuation_ids

__all__ = ["MAX_DRAWS_PER_REFERENCE", "References", "check_alphabet", "draw_references", "length_corrected_scores",
           "random_fillings", "scored_token_counts"]

#: Rejection sampling draws at most this many fillings per reference wanted.
MAX_DRAWS_PER_REFERENCE = 20


@dataclass(frozen=True)
class References:
    """The fillings a canary's exposure is ranked among.

    Attributes:
        fillings: ``n`` strings put in the secret's place.
        token_counts: ``(n,)`` tokens each ``filling + suffix`` is scored on after the prefix.
        secret_tokens: tokens ``secret + suffix`` is scored on.
        exhaustive: every filling of the (token-matched) space but the secret.
        length_control: ``"matched"`` or ``"corrected"`` (module docstring).
    """

    fillings: list[str]
    token_counts: np.ndarray
    secret_tokens: int
    exhaustive: bool
    length_control: str


def scored_token_counts(tokenizer: Any, prefix: str, candidates: list[str]) -> np.ndarray:
    """Tokens each ``prefix + candidate`` is scored on (:func:`~.scoring.continuation_ids`), ``(n,)``."""
    joint, starts = continuation_ids(tokenizer, prefix=prefix, candidates=candidates)
    return np.array([len(ids) - start for ids, start in zip(joint, starts, strict=True)], dtype=np.int64)


def draw_references(tokenizer: Any, *, prefix: str, secret: str, suffix: str = "", alphabet: str, n: int, seed: int,
                    max_draws_per_reference: int = MAX_DRAWS_PER_REFERENCE) -> References:
    """``n`` references for ``prefix + secret + suffix``: token-matched, else length-corrected.

    Draws are i.i.d. uniform over the fillings of ``len(secret)`` characters other than the
    secret (with replacement); at most ``max_draws_per_reference · n`` are tokenized.
    """
    symbols = check_alphabet(alphabet)
    target = int(scored_token_counts(tokenizer, prefix, [secret + suffix])[0])
    if len(symbols) ** len(secret) <= n + 1:
        everything, _ = random_fillings(alphabet=alphabet, length=len(secret), n=n, exclude=secret, seed=seed)
        counts = scored_token_counts(tokenizer, prefix, [f + suffix for f in everything])
        keep = counts == target
        if keep.sum() >= 3:
            return References([f for f, k in zip(everything, keep, strict=True) if k], counts[keep], target, True,
                              "matched")
        return References(everything, counts, target, True, "corrected")
    rng = np.random.default_rng(seed)
    matched: list[str] = []
    first: list[tuple[str, int]] = []  # the first n draws, the fallback's references
    drawn, budget = 0, max_draws_per_reference * n
    while len(matched) < n and drawn < budget:
        rate = max(len(matched) / drawn if drawn else 1.0, 1.0 / max_draws_per_reference)
        want = min(budget - drawn, max(64, math.ceil(1.2 * (n - len(matched)) / rate)))
        rows = rng.integers(0, len(symbols), size=(want, len(secret)))
        drawn += want
        candidates = [f for f in ("".join(symbols[j] for j in row) for row in rows) if f != secret]
        counts = scored_token_counts(tokenizer, prefix, [f + suffix for f in candidates])
        first.extend(zip(candidates[:n - len(first)], counts[:n - len(first)].tolist(), strict=True))
        matched.extend(f for f, k in zip(candidates, counts, strict=True) if k == target)
    if len(matched) >= n:
        return References(matched[:n], np.full(n, target, dtype=np.int64), target, False, "matched")
    return References([f for f, _ in first], np.array([k for _, k in first], dtype=np.int64), target, False,
                      "corrected")


def length_corrected_scores(reference_scores: np.ndarray, token_counts: np.ndarray, *,
                            secret_tokens: int) -> np.ndarray:
    """References' log-perplexities moved to the secret's token count: ``s_i − b·(k_i − k_secret)``.

    ``b`` is the least-squares slope of log-perplexity on token count over the references
    (bits per token under this model); with a single token count there is nothing to
    correct and the scores come back unchanged.
    """
    scores = np.asarray(reference_scores, dtype=np.float64)
    counts = np.asarray(token_counts, dtype=np.float64)
    if scores.shape != counts.shape:
        raise ValueError(f"reference_scores {scores.shape} and token_counts {counts.shape} must have one shape")
    if np.ptp(counts) == 0:
        return scores
    slope = np.polyfit(counts, scores, 1)[0]
    return scores - slope * (counts - secret_tokens)


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
    symbols = check_alphabet(alphabet)
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


def check_alphabet(alphabet: str) -> list[str]:
    """The alphabet's characters; at least 2, each once."""
    symbols = list(alphabet)
    if len(symbols) < 2 or len(set(symbols)) != len(symbols):
        raise ValueError(f"alphabet must hold at least 2 distinct characters, each once; got {alphabet!r}")
    return symbols
