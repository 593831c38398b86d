"""Exposure (Carlini et al. 2019) against hand-computed ranks and its null distribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import skewnorm

from distillguard.lm.probes.exposure import (
    exposure_by_rank,
    exposure_by_skew_normal,
    exposure_from_rank,
    max_exposure_by_rank,
    random_fillings,
    secret_rank,
)

REFS = np.array([1.0, 2.0, 3.0, 4.0])


def test_secret_rank_hand_computed():
    assert secret_rank(0.5, REFS) == 1.0  # below every reference
    assert secret_rank(2.5, REFS) == 3.0  # two references below it
    assert secret_rank(2.0, REFS) == 2.5  # one below, one tied (counts half)
    assert secret_rank(9.0, REFS) == 5.0  # above all: n + 1
    np.testing.assert_array_equal(secret_rank([0.5, 2.5], REFS), [1.0, 3.0])
    assert secret_rank(1.0, np.ones(6)) == 4.0  # tied with all six: the middle, 1 + 6/2


def test_exposure_from_rank_hand_computed():
    assert exposure_from_rank(1, n_references=7) == pytest.approx(3.0)  # log2(8) − log2(1)
    assert exposure_from_rank(2, n_references=7) == pytest.approx(2.0)
    assert exposure_from_rank(8, n_references=7) == pytest.approx(0.0)
    assert max_exposure_by_rank(7) == pytest.approx(3.0)
    assert max_exposure_by_rank(2000) == pytest.approx(math.log2(2001))


def test_exposure_by_rank_caps_at_log2_n_plus_1():
    refs = np.arange(1.0, 8.0)  # 7 references
    assert exposure_by_rank(0.0, refs) == pytest.approx(3.0)
    assert exposure_by_rank(-1e9, refs) == pytest.approx(3.0)  # no further: the cap
    assert exposure_by_rank(100.0, refs) == pytest.approx(0.0)
    np.testing.assert_allclose(exposure_by_rank([0.0, 1.5, 100.0], refs), [3.0, 2.0, 0.0])


def test_exhaustive_references_give_the_exact_definition():
    # |R| = 8 fillings; the secret is the 3rd most likely: exposure = log2 8 − log2 3 exactly.
    scores = np.array([1.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0])  # the 7 other fillings
    assert exposure_by_rank(3.0, scores) == pytest.approx(math.log2(8) - math.log2(3))


@pytest.mark.parametrize("rank", [0, 0.5, 9, float("nan")])
def test_exposure_from_rank_rejects_ranks_outside_1_to_n_plus_1(rank):
    with pytest.raises(ValueError, match=r"rank must be in \[1, 8\]"):
        exposure_from_rank(rank, n_references=7)


def test_bad_references_are_rejected():
    with pytest.raises(ValueError, match="non-empty 1-D"):
        exposure_by_rank(1.0, [])
    with pytest.raises(ValueError, match="non-finite"):
        exposure_by_rank(1.0, [1.0, np.nan])
    with pytest.raises(ValueError, match="at least 3 distinct"):
        exposure_by_skew_normal(1.0, [2.0, 2.0, 2.0])


def test_random_secret_exposure_averages_one_over_ln2():
    """A secret drawn like the references: exposure ≈ −log2 U, mean 1/ln 2, P(> k bits) = 2^−k."""
    rng = np.random.default_rng(0)
    trials, n = 4000, 255
    exposures = np.array([exposure_by_rank(s, refs) for s, refs in zip(rng.normal(size=trials),
                                                                      rng.normal(size=(trials, n)), strict=True)])
    exact = math.log2(n + 1) - math.lgamma(n + 2) / math.log(2) / (n + 1)  # E over a uniform rank in 1..n+1
    assert exact == pytest.approx(1 / math.log(2), abs=0.03)
    assert exposures.mean() == pytest.approx(exact, abs=0.08)  # standard error ≈ 1.44/√4000 = 0.023
    assert exposures.mean() == pytest.approx(1 / math.log(2), abs=0.1)
    assert np.mean(exposures > 2) == pytest.approx(1 / 4, abs=0.03)
    assert np.mean(exposures > 4) == pytest.approx(1 / 16, abs=0.015)


def test_skew_normal_matches_the_tail_and_extrapolates_past_the_cap():
    population = skewnorm(-4, loc=10, scale=3)  # log-perplexities with a long left tail
    refs = population.rvs(size=2000, random_state=1)
    moderate, extreme = population.ppf(1e-3), population.ppf(1e-6)
    assert exposure_by_skew_normal(moderate, refs) == pytest.approx(-math.log2(1e-3), abs=0.75)
    assert exposure_by_skew_normal(extreme, refs) == pytest.approx(-math.log2(1e-6), abs=1.5)
    assert exposure_by_rank(extreme, refs) == pytest.approx(max_exposure_by_rank(2000))  # capped at 10.97
    far = exposure_by_skew_normal(refs.min() - 100.0, refs)
    assert math.isfinite(far) and far > 100  # logcdf: large but finite in the far tail
    assert exposure_by_skew_normal(refs.max() + 100, refs) == pytest.approx(0.0, abs=1e-9)


def test_random_fillings_sample_the_space_without_the_secret():
    fillings, exhaustive = random_fillings(alphabet="0123456789", length=6, n=500, exclude="281946", seed=3)
    assert not exhaustive and len(fillings) == 500
    assert all(len(f) == 6 and set(f) <= set("0123456789") for f in fillings)
    assert "281946" not in fillings
    assert random_fillings(alphabet="0123456789", length=6, n=500, exclude="281946", seed=3)[0] == fillings
    assert random_fillings(alphabet="0123456789", length=6, n=500, exclude="281946", seed=4)[0] != fillings


def test_random_fillings_enumerate_a_small_space():
    fillings, exhaustive = random_fillings(alphabet="ab", length=3, n=10, exclude="aba", seed=0)
    assert exhaustive
    assert sorted(fillings) == sorted({"aaa", "aab", "abb", "baa", "bab", "bba", "bbb"})


@pytest.mark.parametrize("alphabet", ["a", "aab", ""])
def test_random_fillings_reject_bad_alphabets(alphabet):
    with pytest.raises(ValueError, match="at least 2 distinct characters"):
        random_fillings(alphabet=alphabet, length=3, n=5, seed=0)
