"""Verbatim-substring index: hashed n-grams of a private corpus.

A generation contains a verbatim substring of at least ``n`` units from the corpus
exactly when one of its ``n``-grams is a corpus ``n``-gram, so one sorted array of
n-gram hashes answers "does this generation reproduce ≥ n units of private text?" in
``O(W log N)`` for ``W`` windows against ``N`` corpus n-grams, at 8 bytes per n-gram.

Units are token ids (Carlini et al. 2022 measure extraction in tokens) or Unicode code
points (:func:`char_units`; tokenizer-independent). Hashes are a polynomial over the
units modulo ``2^64``: on ordinary (non-adversarial) text two distinct n-grams collide
with probability about ``2^−64``, so ``W`` windows checked against ``N`` corpus n-grams
expect ``W·N/2^64`` false matches (5e-5 for a million against a billion).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["NgramIndex", "char_units", "ngram_hashes", "private_ngram_hits"]

_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio), units are offset by 1


def char_units(text: str) -> np.ndarray:
    """Unicode code points of ``text``, ``(len(text),)`` uint64 (character-level units)."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def ngram_hashes(units: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """Hashes of every length-``n`` window of ``units``, ``(max(0, len − n + 1),)`` uint64."""
    if n < 1:
        raise ValueError(f"n-gram length must be at least 1; got {n}")
    x = np.asarray(units, dtype=np.uint64) + np.uint64(1)  # (L,), so unit 0 still counts
    windows = x.size - n + 1
    if windows <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(windows, dtype=np.uint64)
    for j in range(n):  # n vectorized passes; uint64 arithmetic wraps modulo 2^64
        h = h * _BASE + x[j:j + windows]
    return h


class NgramIndex:
    """Set of the hashed ``n``-grams of a corpus of unit sequences.

    Args:
        sequences: the corpus, each a sequence of non-negative ints (token ids or code points).
        n: n-gram length ``L``: a match means a verbatim substring of at least ``L`` units.
    """

    def __init__(self, sequences: Iterable[Sequence[int] | np.ndarray], *, n: int) -> None:
        if n < 1:
            raise ValueError(f"The 'n' parameter of NgramIndex must be at least 1. Got {n} instead.")
        self.n = n
        parts = [ngram_hashes(s, n) for s in sequences]
        self.hashes_ = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.uint64)

    def __len__(self) -> int:
        return int(self.hashes_.size)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """Bool mask ``(W,)``: which of the given n-gram hashes are in the index."""
        if self.hashes_.size == 0 or hashes.size == 0:
            return np.zeros(hashes.shape, dtype=bool)
        where = np.searchsorted(self.hashes_, hashes)
        where[where == self.hashes_.size] = 0
        return self.hashes_[where] == hashes

    def matches(self, units: Sequence[int] | np.ndarray) -> np.ndarray:
        """Bool mask over the windows of ``units``: which n-grams occur in the corpus."""
        return self.contains(ngram_hashes(units, self.n))


def private_ngram_hits(sequences: Iterable[Sequence[int] | np.ndarray], *, private: NgramIndex,
                       public: NgramIndex | None = None) -> tuple[np.ndarray, int]:
    """Private n-grams reproduced by each sequence, not counting those also in public text.

    An n-gram found in both the private and the public corpus (common phrases, transfer
    text the student was trained on) proves nothing about the private data, so it is not
    counted.

    Args:
        sequences: ``m`` generations as unit sequences.
        private: index of the private corpus.
        public: index of public text with the same ``n``, or None.

    Returns:
        ``(hits, distinct)``: ``hits`` ``(m,)`` int, the number of windows of each sequence
        that are private-only n-grams; ``distinct``, the number of distinct private-only
        n-grams reproduced over all sequences.
    """
    if public is not None and public.n != private.n:
        raise ValueError(f"private and public indexes must use one n-gram length; got {private.n} and {public.n}")
    counts, found = [], []
    for units in sequences:
        h = ngram_hashes(units, private.n)
        hit = private.contains(h)
        if public is not None:
            hit &= ~public.contains(h)
        counts.append(int(hit.sum()))
        found.append(h[hit])
    distinct = int(np.unique(np.concatenate(found)).size) if found else 0
    return np.asarray(counts, dtype=np.int64), distinct
