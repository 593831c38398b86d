"""Extraction maths: the n-gram index, Carlini et al. 2021's ranking metrics, suffix matching."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.lm.probes.extraction import extraction_metrics, suffix_match, top_indices, zlib_length
from distillguard.lm.probes.ngrams import NgramIndex, char_units, ngram_hashes, private_ngram_hits


def test_ngram_hashes_one_per_window_equal_for_equal_windows():
    h = ngram_hashes([5, 6, 7, 5, 6, 7], 3)
    assert h.shape == (4,) and h.dtype == np.uint64
    assert h[0] == h[3] and len(set(h[:3].tolist())) == 3
    assert ngram_hashes([1, 2], 3).size == 0
    assert ngram_hashes([0, 0, 1], 3)[0] != ngram_hashes([0, 1, 0], 3)[0]  # token 0 counts
    with pytest.raises(ValueError, match="at least 1"):
        ngram_hashes([1, 2], 0)


def test_index_finds_verbatim_windows_only():
    index = NgramIndex([[1, 2, 3, 4, 5], [7, 8, 9]], n=3)
    assert len(index) == 4  # 123, 234, 345, 789
    np.testing.assert_array_equal(index.matches([9, 2, 3, 4, 9]), [False, True, False])
    np.testing.assert_array_equal(index.matches([7, 8, 9]), [True])
    assert not index.matches([1, 3, 2, 4]).any()  # same units, other order
    assert NgramIndex([], n=3).matches([1, 2, 3]).tolist() == [False]


def test_private_hits_skip_ngrams_that_are_also_public():
    private = NgramIndex([[1, 2, 3, 4, 5, 6]], n=3)
    public = NgramIndex([[1, 2, 3, 9]], n=3)
    hits, distinct = private_ngram_hits([[1, 2, 3], [2, 3, 4, 5], [9, 9, 9], [3, 4, 5]], private=private,
                                        public=public)
    np.testing.assert_array_equal(hits, [0, 2, 0, 1])  # 123 is public; 234 and 345 are private
    assert distinct == 2  # 234, 345
    with pytest.raises(ValueError, match="one n-gram length"):
        private_ngram_hits([[1]], private=private, public=NgramIndex([], n=4))


def test_char_units_are_code_points():
    np.testing.assert_array_equal(char_units("hé€"), [ord("h"), ord("é"), ord("€")])
    index = NgramIndex([char_units("the cat sat on the mat")], n=7)
    assert index.matches(char_units("a cat sat down")).any()  # " cat sa" etc.
    assert not index.matches(char_units("a dog sat down")).any()


def test_extraction_metrics_hand_computed():
    metrics = extraction_metrics(nll=np.array([1.0, 2.0]), zlib_bytes=np.array([10, 10]),
                                 reference_nll=np.array([2.0, 2.0]), lowercase_nll=np.array([3.0, 2.0]))
    np.testing.assert_allclose(metrics["perplexity"], [-1.0, -2.0])
    np.testing.assert_allclose(metrics["zlib"], [10.0, 5.0])
    np.testing.assert_allclose(metrics["reference"], [2.0, 1.0])
    np.testing.assert_allclose(metrics["lowercase"], [3.0, 1.0])
    assert set(extraction_metrics(nll=np.ones(2), zlib_bytes=np.ones(2))) == {"perplexity", "zlib"}
    with pytest.raises(ValueError, match="shape"):
        extraction_metrics(nll=np.ones(2), zlib_bytes=np.ones(3))


def test_top_indices_best_first_stable_nan_last():
    np.testing.assert_array_equal(top_indices(np.array([1.0, np.nan, 3.0, 3.0, 2.0]), 4), [2, 3, 4, 0])


def test_suffix_match_exact_and_per_token():
    exact, accuracy = suffix_match(np.array([[1, 2, 3], [1, 2, 4]]), np.array([[1, 2, 3], [1, 0, 3]]))
    np.testing.assert_array_equal(exact, [True, False])
    np.testing.assert_allclose(accuracy, [1.0, 1 / 3])
    with pytest.raises(ValueError, match="one shape"):
        suffix_match(np.zeros((2, 3)), np.zeros((2, 4)))


def test_zlib_length_is_the_compressed_utf8_length():
    assert zlib_length("abc") == 11
    assert zlib_length("ab" * 100) < zlib_length("".join(chr(97 + (i * 7) % 26) for i in range(200)))
