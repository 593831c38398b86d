"""Training-data extraction: sampled generations, k-extractability, repetition divergence.

- Untargeted extraction (Carlini et al. 2021, "Extracting Training Data from Large
  Language Models", §5–6): sample generations from a start token, rank them by
  membership metrics (perplexity, zlib ratio, reference-model ratio, lowercase ratio),
  and verify each against the private corpus: a generation is *extracted* when it holds a
  verbatim private substring of at least ``min_length`` units (:mod:`.ngrams`).
- k-extractability (Carlini et al. 2022, "Quantifying Memorization", §3): the ``k``-token
  prefix of a training text, decoded greedily, reproduces the next ``suffix_len`` tokens.
- Divergence (Nasr et al. 2023, "Scalable Extraction of Training Data"): a prompt of one
  token repeated many times pushes the model off its chat/LM distribution; count the
  generations that then emit verbatim private n-grams.

Every runner returns counts and rates only, never a generated or private string.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from distillguard.config.deploy import EXTRACTION_TOP_K
from distillguard.lm.probes.generation import generate_continuations, greedy_decode, special_ids
from distillguard.lm.probes.ngrams import NgramIndex, char_units, private_ngram_hits
from distillguard.lm.probes.scoring import (
    context_length,
    encode,
    encode_bare,
    encode_prompts,
    score_token_ids,
    special_affixes,
)

__all__ = [
    "divergence_probe",
    "extraction_metrics",
    "extraction_probe",
    "k_extractable",
    "suffix_match",
    "top_indices",
    "zlib_length",
]

Unit = Literal["tokens", "chars"]
_MIN_NLL = 1e-6  # floor on mean NLL in ratio denominators (a fully memorized text has NLL ≈ 0)


def zlib_length(text: str) -> int:
    """zlib entropy of a text: ``len(zlib.compress(text.encode("utf-8")))`` bytes (Carlini et al. 2021)."""
    return len(zlib.compress(text.encode("utf-8")))


def extraction_metrics(*, nll: np.ndarray, zlib_bytes: np.ndarray, reference_nll: np.ndarray | None = None,
                       lowercase_nll: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Carlini et al. 2021 (§6.1) ranking metrics; HIGHER = more likely memorized.

    With ``nll`` the target's mean NLL per token (nats, the log-perplexity):

    - ``perplexity``: ``−nll``
    - ``zlib``: ``zlib_bytes / nll``
    - ``reference``: ``reference_nll / nll`` (target surprisingly confident relative to a
      reference model, e.g. a smaller model or one never trained on the private data)
    - ``lowercase``: ``lowercase_nll / nll`` (NLL of the lowercased text under the target)

    Args:
        nll: ``(m,)`` mean NLL per token under the target.
        zlib_bytes: ``(m,)`` zlib-compressed lengths.
        reference_nll: ``(m,)`` mean NLL under the reference model, or None.
        lowercase_nll: ``(m,)`` mean NLL of the lowercased texts under the target, or None.

    Returns:
        Metric name → ``(m,)`` scores.
    """
    nll = np.asarray(nll, dtype=np.float64)
    floor = np.maximum(nll, _MIN_NLL)
    metrics = {"perplexity": -nll, "zlib": np.asarray(zlib_bytes, dtype=np.float64) / floor}
    if reference_nll is not None:
        metrics["reference"] = np.asarray(reference_nll, dtype=np.float64) / floor
    if lowercase_nll is not None:
        metrics["lowercase"] = np.asarray(lowercase_nll, dtype=np.float64) / floor
    for name, values in metrics.items():
        if values.shape != nll.shape:
            raise ValueError(f"metric {name!r} has shape {values.shape}; expected {nll.shape}")
    return metrics


def top_indices(scores: np.ndarray, top_n: int) -> np.ndarray:
    """Indices of the ``top_n`` highest scores, best first (stable for ties; NaN last)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    return order[:top_n]


def suffix_match(generated: np.ndarray, suffixes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact and per-token agreement of greedy continuations with the true suffixes.

    Args:
        generated: ``(n, s)`` generated token ids.
        suffixes: ``(n, s)`` true suffix token ids.

    Returns:
        ``(exact (n,) bool, token_accuracy (n,) float)``: exact means all ``s`` tokens agree
        (Carlini et al. 2022's extractability); token accuracy is the fraction that agree.
    """
    generated, suffixes = np.asarray(generated), np.asarray(suffixes)
    if generated.shape != suffixes.shape or generated.ndim != 2:
        raise ValueError(f"generated and suffixes must be (n, s) arrays of one shape; got {generated.shape} "
                         f"and {suffixes.shape}")
    same = generated == suffixes
    return same.all(axis=1), same.mean(axis=1)


def k_extractable(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *, k: int = 50,
                  suffix_len: int = 50, batch_size: int = 32) -> dict[str, Any]:
    """Fraction of texts whose first ``k`` tokens make greedy decoding emit the next ``suffix_len``.

    Carlini et al. 2022 (§3, "k-extractable"): a string ``s`` is extractable with ``k``
    tokens of context if ``[p ‖ s]`` is in the training data and greedy decoding from the
    ``k``-token prefix ``p`` produces ``s``. Here ``p`` is each text's first ``k`` tokens
    and ``s`` the next ``suffix_len``; texts shorter than ``k + suffix_len`` tokens are
    skipped and counted. Texts are tokenized as the tokenizer does by default, so a BOS
    it prepends is the prefix's first token.

    Returns:
        ``{"probe": "k_extractable", "k", "suffix_len", "n", "n_extracted", "rate",
        "token_accuracy", "n_skipped"}``; ``rate`` and ``token_accuracy`` (mean per-token
        agreement) are None when no text is long enough.
    """
    if k < 1 or suffix_len < 1:
        raise ValueError(f"k and suffix_len must be at least 1; got k={k}, suffix_len={suffix_len}")
    ids = [row for row in encode(tokenizer, texts) if len(row) >= k + suffix_len]
    result: dict[str, Any] = {"probe": "k_extractable", "k": k, "suffix_len": suffix_len, "n": len(ids),
                              "n_extracted": 0, "rate": None, "token_accuracy": None,
                              "n_skipped": len(texts) - len(ids)}
    if not ids:
        return result
    prefixes = [row[:k] for row in ids]
    suffixes = np.array([row[k:k + suffix_len] for row in ids], dtype=np.int64)  # (n, s)
    generated = greedy_decode(model, prefixes, steps=suffix_len, batch_size=batch_size)  # (n, s)
    exact, accuracy = suffix_match(generated, suffixes)
    result.update(n_extracted=int(exact.sum()), rate=float(exact.mean()), token_accuracy=float(accuracy.mean()))
    return result


def extraction_probe(model: torch.nn.Module, tokenizer: Any, private_texts: Sequence[str], *,
                     n_samples: int = 256, max_new_tokens: int = 64, min_length: int = 32, unit: Unit = "tokens",
                     top_n: int | None = None, prompt: str | None = None, public_texts: Sequence[str] = (),
                     reference_model: torch.nn.Module | None = None, reference_tokenizer: Any = None,
                     lowercase: bool = True, top_k: int | None = EXTRACTION_TOP_K, seed: int = 0,
                     batch_size: int = 32) -> dict[str, Any]:
    """Sample generations, rank them, and count those holding verbatim private text.

    Carlini et al. 2021: generations are sampled (top-k 40 by default) from ``prompt`` (or
    the tokenizer's BOS/EOS token), scored by :func:`extraction_metrics`, and each metric's
    ``top_n`` are checked against the private corpus.

    Args:
        model: target causal LM (``generate`` and ``.logits``).
        tokenizer: its tokenizer.
        private_texts: the corpus whose leakage is measured.
        n_samples: number of generations.
        max_new_tokens: tokens per generation.
        min_length: a generation counts as extracted when it holds a private substring of at
            least this many ``unit``s (Carlini et al. 2022 use 50 tokens).
        unit: ``"tokens"`` (the generated ids against the tokenized corpus) or ``"chars"``
            (the decoded text against the corpus text, tokenizer-independent).
        top_n: generations checked per metric; default ``max(1, n_samples // 10)``.
        prompt: text generations start from; None uses the tokenizer's start token(s) (the
            ones it prepends to every text, else its BOS, else its EOS token).
        public_texts: text whose n-grams never count as private (e.g. the transfer set).
        reference_model: model for the ``reference`` ratio (e.g. one never trained on the
            private data); None skips that metric.
        reference_tokenizer: its tokenizer; default ``tokenizer``.
        lowercase: also rank by the lowercase ratio (one more scoring pass).
        top_k: sampling top-k; None samples the full distribution.
        seed: sampling seed.
        batch_size: sequences per batch.

    Returns:
        ``{"probe": "extraction", "n_generations", "unit", "min_length", "n_extracted",
        "extraction_rate", "distinct_private_ngrams", "top_n", "top_n_extracted": {metric: count}}``.
    """
    top_n = max(1, n_samples // 10) if top_n is None else top_n
    if n_samples < 1 or not 1 <= top_n <= n_samples:
        raise ValueError(f"need n_samples ≥ 1 and 1 ≤ top_n ≤ n_samples; got n_samples={n_samples}, "
                         f"top_n={top_n}")
    pad, eos = special_ids(tokenizer)
    prompt_ids = _prompt_ids(tokenizer, prompt)
    generations = [g[0] for g in generate_continuations(
        model, [prompt_ids] * n_samples, max_new_tokens=max_new_tokens, do_sample=True, seed=seed, top_k=top_k,
        batch_size=batch_size, pad_token_id=pad, eos_token_id=eos)]
    texts = [tokenizer.decode(g, skip_special_tokens=True) for g in generations]
    hits, distinct = _private_hits(tokenizer, generations, texts, private_texts, public_texts,
                                   n=min_length, unit=unit, extra_public=[prompt_ids])
    metrics = _ranking_metrics(model, tokenizer, prompt_ids, generations, texts, reference_model=reference_model,
                               reference_tokenizer=reference_tokenizer, lowercase=lowercase, batch_size=batch_size,
                               pad=pad)
    extracted = hits > 0
    return {"probe": "extraction", "n_generations": n_samples, "unit": unit, "min_length": min_length,
            "n_extracted": int(extracted.sum()), "extraction_rate": float(extracted.mean()),
            "distinct_private_ngrams": distinct, "top_n": top_n,
            "top_n_extracted": {name: int(extracted[top_indices(s, top_n)].sum()) for name, s in metrics.items()}}


def _ranking_metrics(model: torch.nn.Module, tokenizer: Any, prompt_ids: list[int], generations: list,
                     texts: list[str], *, reference_model: torch.nn.Module | None, reference_tokenizer: Any,
                     lowercase: bool, batch_size: int, pad: int) -> dict[str, np.ndarray]:
    """Each generation's score under every ranking metric of :func:`extraction_metrics`.

    The generation's mean NLL under ``model`` always; the reference model's and the
    lowercase text's NLL when asked for, each one more scoring pass.
    """
    nll = _mean_nll(model, [prompt_ids + g for g in generations], len(prompt_ids), batch_size, pad)
    reference_nll = lowercase_nll = None
    if reference_model is not None:
        ref_tok = tokenizer if reference_tokenizer is None else reference_tokenizer
        reference_nll = _mean_nll_of_texts(reference_model, ref_tok, texts, batch_size)
    if lowercase:
        lower = [prompt_ids + ids for ids in encode_bare(tokenizer, [t.lower() for t in texts])]
        lowercase_nll = _mean_nll(model, lower, len(prompt_ids), batch_size, pad)
    return extraction_metrics(nll=nll, zlib_bytes=np.array([zlib_length(t) for t in texts]),
                              reference_nll=reference_nll, lowercase_nll=lowercase_nll)


def divergence_probe(model: torch.nn.Module, tokenizer: Any, private_texts: Sequence[str], *,
                     token_text: str = " poem", repeats: int = 50, n_samples: int = 64, max_new_tokens: int = 128,
                     min_length: int = 32, unit: Unit = "tokens", public_texts: Sequence[str] = (),
                     top_k: int | None = EXTRACTION_TOP_K, seed: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """Fraction of generations after a repeated-token prompt that hold verbatim private text.

    Nasr et al. 2023: a prompt of one token repeated many times makes models diverge and
    regurgitate training data. The prompt is ``token_text`` tokenized once and its ids
    repeated ``repeats`` times (after BOS/EOS if the tokenizer has one); n-grams made only
    of the prompt never count as private.

    Returns:
        ``{"probe": "divergence", "n_generations", "repeats", "unit", "min_length",
        "n_with_private_ngram", "rate", "distinct_private_ngrams"}``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1; got {repeats}")
    token_ids = encode_bare(tokenizer, [token_text])[0]
    if not token_ids:
        raise ValueError(f"token_text {token_text!r} tokenizes to nothing; pick a word such as ' poem'")
    pad, eos = special_ids(tokenizer)
    start = _prompt_ids(tokenizer, None, required=False)
    prompt_ids = start + token_ids * repeats
    generations = [g[0] for g in generate_continuations(
        model, [prompt_ids] * n_samples, max_new_tokens=max_new_tokens, do_sample=True, seed=seed, top_k=top_k,
        batch_size=batch_size, pad_token_id=pad, eos_token_id=eos)]
    texts = [tokenizer.decode(g, skip_special_tokens=True) for g in generations]
    hits, distinct = _private_hits(tokenizer, generations, texts, private_texts, public_texts,
                                   n=min_length, unit=unit, extra_public=[token_ids * (repeats + min_length)])
    leaked = hits > 0
    return {"probe": "divergence", "n_generations": n_samples, "repeats": repeats, "unit": unit,
            "min_length": min_length, "n_with_private_ngram": int(leaked.sum()), "rate": float(leaked.mean()),
            "distinct_private_ngrams": distinct}


# --- internals ----------------------------------------------------------------------------------


def _prompt_ids(tokenizer: Any, prompt: str | None, *, required: bool = True) -> list[int]:
    if prompt is not None:
        ids = encode_prompts(tokenizer, [prompt])[0]
        if not ids:
            raise ValueError(f"prompt {prompt!r} tokenizes to nothing")
        return ids
    head = special_affixes(tokenizer)[0]
    if head:  # the tokenizer's own start tokens (e.g. a BOS it always prepends)
        return head
    for name in ("bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return [value]
    if required:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start generations from; pass prompt=")
    return []


def _private_hits(tokenizer: Any, generations: list[list[int]], texts: list[str], private_texts: Sequence[str],
                  public_texts: Sequence[str], *, n: int, unit: Unit,
                  extra_public: list[list[int]]) -> tuple[np.ndarray, int]:
    """Private-only n-gram hits per generation, in tokens or characters."""
    if unit == "tokens":
        private = NgramIndex(encode(tokenizer, list(private_texts)), n=n)
        public = NgramIndex([*encode(tokenizer, list(public_texts)), *extra_public], n=n)
        return private_ngram_hits(generations, private=private, public=public)
    if unit == "chars":
        private = NgramIndex([char_units(t) for t in private_texts], n=n)
        extra = [tokenizer.decode(ids, skip_special_tokens=True) for ids in extra_public]
        public = NgramIndex([char_units(t) for t in [*public_texts, *extra]], n=n)
        return private_ngram_hits([char_units(t) for t in texts], private=private, public=public)
    raise ValueError(f"unit must be 'tokens' or 'chars'; got {unit!r}")


def _mean_nll(model: torch.nn.Module, sequences: list[list[int]], context: int, batch_size: int,
              pad: int) -> np.ndarray:
    """Mean NLL per token of everything after the first ``context`` tokens; +inf when nothing follows."""
    out = np.full(len(sequences), np.inf)
    limit = context_length(model)
    if limit is not None:  # re-tokenized (lowercased, reference) text can outgrow the context: rank on its start
        sequences = [s[:limit] for s in sequences]
    scorable = [i for i, s in enumerate(sequences) if len(s) > max(1, context)]
    if scorable:
        scored = score_token_ids(model, [sequences[i] for i in scorable], score_from=[max(1, context)] * len(scorable),
                                 batch_size=batch_size, pad_token_id=pad)
        out[scorable] = -scored.mean_logprob()
    return out


def _mean_nll_of_texts(model: torch.nn.Module, tokenizer: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """Mean NLL per token of each text under ``model``, after its start token(s) when it has any."""
    start = _prompt_ids(tokenizer, None, required=False)
    pad, _ = special_ids(tokenizer)
    return _mean_nll(model, [start + ids for ids in encode_bare(tokenizer, texts)], max(1, len(start)), batch_size,
                     pad)
