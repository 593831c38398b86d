"""PATE's vote histogram, GNMax and Confident-GNMax: what they answer and how the noise is drawn."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.privacy.aggregation import aggregate, confident_gnmax, gnmax, plurality, vote_counts


def test_vote_counts_histogram_each_query():
    predictions = np.array([[0, 1, 2, 2], [0, 2, 2, 1], [1, 2, 2, 0]])  # (T=3, n=4)
    expected = np.array([[2, 1, 0], [0, 1, 2], [0, 0, 3], [1, 1, 1]])
    assert np.array_equal(vote_counts(predictions, 3), expected)
    assert vote_counts(predictions, 5).sum(axis=1).tolist() == [3] * 4
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        vote_counts(predictions, 2)


def test_gnmax_with_vanishing_noise_is_the_plurality_vote():
    rng = np.random.default_rng(0)
    votes = vote_counts(rng.integers(0, 4, size=(25, 500)), 4)  # 25 teachers, 4 classes
    clear = np.sort(votes, axis=1)[:, -1] > np.sort(votes, axis=1)[:, -2]  # rows with a unique winner
    labels = gnmax(votes, sigma=1e-9, rng=np.random.default_rng(1))
    assert np.array_equal(labels[clear], votes[clear].argmax(axis=1))
    # Ties are defined as going to the lowest class index (noiseless σ = 0 and plurality).
    tied = np.array([[3, 5, 5, 1], [4, 4, 4, 4], [0, 2, 0, 2]])
    assert plurality(tied).tolist() == [1, 0, 1]
    assert gnmax(tied, sigma=0.0, rng=np.random.default_rng(0)).tolist() == [1, 0, 1]


def test_gnmax_noise_is_seeded_and_large_noise_flips_labels():
    votes = np.tile([6, 4, 0], (2000, 1))
    a = gnmax(votes, sigma=5.0, rng=np.random.default_rng(3))
    assert np.array_equal(a, gnmax(votes, sigma=5.0, rng=np.random.default_rng(3)))
    # Pr[class 1 wins] ≈ Φ̄(2 / (5√2)) ≈ 0.39, ignoring class 2; a loose band around it
    assert 0.25 < (a != 0).mean() < 0.5


def test_confident_gnmax_with_threshold_zero_answers_everything():
    votes = vote_counts(np.random.default_rng(0).integers(0, 3, size=(50, 200)), 3)  # top count >= 17
    labels, answered = confident_gnmax(votes, threshold=0.0, sigma1=1.0, sigma2=1e-9,
                                       rng=np.random.default_rng(0))
    assert answered.all() and (labels >= 0).all()


def test_confident_gnmax_answers_only_confident_queries():
    votes = np.array([[48, 1, 1]] * 100 + [[17, 17, 16]] * 100)  # 50 teachers: agreement, then none
    labels, answered = confident_gnmax(votes, threshold=35.0, sigma1=2.0, sigma2=1.0,
                                       rng=np.random.default_rng(0))
    assert answered[:100].all() and not answered[100:].any()
    assert (labels[:100] == 0).all() and (labels[100:] == -1).all()


def test_aggregate_without_threshold_answers_every_query_with_gnmax():
    votes = vote_counts(np.random.default_rng(0).integers(0, 3, size=(9, 40)), 3)
    labels, answered = aggregate(votes, sigma=2.0, threshold=None, sigma_threshold=None, rng=np.random.default_rng(5))
    assert answered.all() and np.array_equal(labels, gnmax(votes, sigma=2.0, rng=np.random.default_rng(5)))
