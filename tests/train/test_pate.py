"""PATE: partition, aggregation and RDP accounting golden numbers, and the teacher ensemble."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distillguard.config import TeacherConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard.errors import ConfigError
from distillguard.train.pate import (
    confident_gnmax,
    data_dependent_epsilon,
    ensemble_predictions,
    gnmax,
    gnmax_rdp,
    gnmax_rdp_data_dependent,
    partition_rows,
    pate_epsilon,
    plurality,
    rdp_to_dp,
    threshold_rdp,
    train_teacher_ensemble,
    vote_counts,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models train faster on one thread, and far faster when the CPUs are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("n", "teachers"), [(10, 1), (10, 3), (301, 7), (50, 50)])
def test_partitions_are_disjoint_cover_all_rows_and_balanced(n, teachers):
    parts = partition_rows(n, teachers, seed=0)
    assert len(parts) == teachers
    joined = np.concatenate(parts)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(parts, partition_rows(n, teachers, seed=0)))
    if teachers > 1:
        assert not all(np.array_equal(a, b) for a, b in zip(parts, partition_rows(n, teachers, seed=1)))


@pytest.mark.parametrize("teachers", [0, 11])
def test_bad_partition_count_names_it(teachers):
    with pytest.raises(ConfigError, match=f"'n_teachers'.*Got {teachers} instead"):
        partition_rows(10, teachers, seed=0)


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


def test_gnmax_and_threshold_rdp_are_gaussian_mechanisms():
    alpha = np.array([2.0, 10.0, 100.0])
    np.testing.assert_allclose(gnmax_rdp(alpha, sigma=4.0), alpha / 16)  # Δ = √2: α·2/(2σ²)
    np.testing.assert_allclose(threshold_rdp(alpha, sigma1=4.0), alpha / 32)  # Δ = 1: α/(2σ²)
    with pytest.raises(ValueError, match="orders must be > 1"):
        gnmax_rdp(np.array([1.0]), sigma=1.0)


@pytest.mark.parametrize(("queries", "sigma", "delta"), [(1000, 40.0, 1e-5), (100, 10.0, 1e-6), (5000, 100.0, 1e-5)])
def test_pate_epsilon_equals_the_closed_form_composition(queries, sigma, delta):
    """Golden: min_α q·α/σ² + log(1/δ)/(α−1) is at α* = 1 + σ·sqrt(log(1/δ)/q)."""
    got = pate_epsilon(answered=queries, queries=queries, sigma=sigma, sigma1=None, delta=delta)
    log_inv_delta = math.log(1 / delta)
    alpha_star = 1 + sigma * math.sqrt(log_inv_delta / queries)
    eps_star = queries * alpha_star / sigma**2 + log_inv_delta / (alpha_star - 1)
    assert eps_star == pytest.approx(queries / sigma**2 + 2 * math.sqrt(queries * log_inv_delta) / sigma)
    assert got["epsilon"] == pytest.approx(eps_star, rel=1e-5) and got["epsilon"] >= eps_star
    assert got["best_alpha"] == pytest.approx(alpha_star, rel=1e-2)
    assert got["analysis"] == "data-independent" and got["queries"] == got["answered"] == queries


def test_pate_epsilon_golden_number_and_threshold_cost():
    # 1000 GNMax answers at σ = 40, δ = 1e-5: 1000/1600 + 2·sqrt(1000·ln 1e5)/40 = 5.98991507
    plain = pate_epsilon(answered=1000, queries=1000, sigma=40.0, sigma1=None, delta=1e-5)
    assert plain["epsilon"] == pytest.approx(5.98991507, abs=1e-5)
    # Confident-GNMax: 300 answers of 1000 queries, σ1 = 150: rdp(α) = α·(300/40² + 1000/(2·150²))
    conf = pate_epsilon(answered=300, queries=1000, sigma=40.0, sigma1=150.0, delta=1e-5)
    rate = 300 / 40**2 + 1000 / (2 * 150**2)
    assert conf["epsilon"] == pytest.approx(rate + 2 * math.sqrt(rate * math.log(1e5)), rel=1e-5)
    assert conf["epsilon"] < plain["epsilon"] and conf["sigma1"] == 150.0
    # An explicit grid is used as given.
    alphas = np.array([2.0, 4.0, 8.0])
    eps, best = rdp_to_dp(alphas, 1000 * alphas / 40**2, delta=1e-5)
    assert best == 4.0 and eps == pytest.approx(1000 * 4 / 1600 + math.log(1e5) / 3)  # α = 4 beats 2 and 8


def test_pate_epsilon_rejects_inconsistent_counts():
    with pytest.raises(ValueError, match="answered <= queries"):
        pate_epsilon(answered=5, queries=3, sigma=1.0, sigma1=1.0, delta=1e-5)
    with pytest.raises(ValueError, match="set sigma1"):
        pate_epsilon(answered=2, queries=3, sigma=1.0, sigma1=None, delta=1e-5)


def test_data_dependent_epsilon_golden_and_never_above_data_independent():
    """Golden value cross-checked against the authors' reference code (pate_2018 ``core.py``)."""
    alphas = np.array([1.5, 2, 3, 5, 8, 12, 20, 32, 50, 100, 200], dtype=float)
    votes = np.array([[230] + [2] * 10] * 100 + [[150, 100] + [0] * 9] * 20)  # 250 teachers, 11 classes
    got = data_dependent_epsilon(votes, sigma=40.0, delta=1e-5, alphas=alphas)
    assert got["epsilon"] == pytest.approx(0.8509608717094865, rel=1e-9) and got["best_alpha"] == 32.0
    assert got["analysis"] == "data-dependent (not itself private)"
    independent = pate_epsilon(answered=120, queries=120, sigma=40.0, sigma1=None, delta=1e-5, alphas=alphas)
    assert got["epsilon"] < independent["epsilon"]
    # With no consensus the data-dependent bound falls back to α/σ².
    np.testing.assert_allclose(gnmax_rdp_data_dependent(alphas, logq=math.log(0.5), sigma=10.0), alphas / 100)


def _three_clusters(spread: float):
    """300 members around 3 random centers in 20 features: (rng, centers, members, schema)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, spread, (3, 20))
    y = rng.integers(0, 3, 300)
    X = (centers[y] + rng.normal(size=(300, 20))).astype(np.float32)
    return rng, centers, Split(X=X, y=y.astype(np.int64), ids=np.arange(300)), Schema(
        [f"f{i}" for i in range(20)], [0, 1, 2], (20,))


def test_ensemble_trains_one_distinct_teacher_per_partition():
    rng, centers, members, schema = _three_clusters(1.5)
    cfg = TeacherConfig(hidden=[8], epochs=5, batch_size=16, lr=1e-2, val_fraction=0.2)
    scaler = Standardizer.fit(rng.normal(size=(100, 20)).astype(np.float32))
    teachers = train_teacher_ensemble(members, schema=schema, cfg=cfg, n_teachers=5, seed=0, scaler=scaler)
    assert len(teachers) == 5 and all(t.scaler is scaler for t in teachers)
    queries = (centers[rng.integers(0, 3, 400)] + 1.5 * rng.normal(size=(400, 20))).astype(np.float32)
    predictions = ensemble_predictions(teachers, queries)  # (5, 400)
    assert predictions.shape == (5, 400)
    assert len({p.tobytes() for p in predictions}) == 5  # different data, different teachers
    logits = [t.logits(queries) for t in teachers]
    assert all(not np.allclose(logits[0], other) for other in logits[1:])
    nearest_center = (queries @ centers.T - 0.5 * (centers**2).sum(1)).argmax(1)  # Bayes label
    assert (plurality(vote_counts(predictions, 3)) == nearest_center).mean() > 0.8
    again = train_teacher_ensemble(members, schema=schema, cfg=cfg, n_teachers=5, seed=0, scaler=scaler)
    assert np.array_equal(ensemble_predictions(again, queries), predictions)


def test_ensemble_teachers_train_with_the_recipe_s_label_smoothing():
    """``[teacher] label_smoothing`` reaches every teacher of an ensemble (it was once dropped silently)."""
    _, _, members, schema = _three_clusters(3.0)
    X = members.X
    cfg = TeacherConfig(hidden=[16], epochs=30, batch_size=16, lr=1e-2)
    scaler = Standardizer.fit(X)

    def mean_confidence(label_smoothing: float) -> float:
        teachers = train_teacher_ensemble(members, schema=schema, cfg=cfg.model_copy(update={"label_smoothing": label_smoothing}),
                                          n_teachers=3, seed=0, scaler=scaler)
        z = np.stack([t.logits(X) for t in teachers])  # (3, n, C)
        p = np.exp(z - z.max(-1, keepdims=True))
        return float((p / p.sum(-1, keepdims=True)).max(-1).mean())

    plain, smoothed = mean_confidence(0.0), mean_confidence(0.3)
    assert plain > 0.97  # separable clusters: unsmoothed teachers become certain
    assert smoothed < 0.85  # smoothing 0.3 over 3 classes targets 0.8 for the true class


def test_fit_partitions_trains_each_uneven_part_as_loop_fit_would():
    import torch
    import torch.nn.functional as F

    from distillguard.models.classifiers import architecture, build_model
    from distillguard.train.loop import Recipe, fit
    from distillguard.train.pate import fit_partitions

    rng = np.random.default_rng(3)
    X = torch.from_numpy(rng.normal(size=(23, 6)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 3, 23))
    parts = partition_rows(23, 4, seed=1)  # sizes 6, 6, 6, 5: two batched groups
    arch = architecture(kind="mlp", input_shape=(6,), n_classes=3, hidden=[8], channels=[])
    recipe = Recipe(epochs=4, batch_size=4, lr=1e-2, weight_decay=0.0)
    states = fit_partitions(arch, X, y, parts, recipe=recipe, seeds=[10, 11, 12, 13])
    for part, seed, state in zip(parts, [10, 11, 12, 13], states):
        index = torch.from_numpy(part)
        model, _ = fit(build_model(arch, seed=seed), X[index], y[index], loss_fn=F.cross_entropy, recipe=recipe, seed=seed)
        for name, tensor in model.state_dict().items():
            torch.testing.assert_close(state[name], tensor, atol=1e-5, rtol=0)
    assert not torch.allclose(states[0][next(iter(states[0]))], states[3][next(iter(states[3]))])


def test_stored_ensemble_answers_with_averaged_probabilities_and_member_votes(tmp_path):
    from distillguard.models.artifact import load_classifier, save_classifier
    from distillguard.train.pate import as_ensemble, ensemble_votes

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    schema = Schema([f"f{i}" for i in range(5)], [0, 1], (5,))
    cfg = TeacherConfig(hidden=[4], epochs=3, batch_size=16)
    teachers = train_teacher_ensemble(Split(X=X, y=y, ids=np.arange(120)), schema=schema, cfg=cfg, n_teachers=3,
                                      seed=0, scaler=Standardizer.fit(X))
    save_classifier(tmp_path, as_ensemble(teachers))
    loaded, _ = load_classifier(tmp_path)
    probs = np.mean([t.predict_proba(X) for t in teachers], axis=0)
    np.testing.assert_allclose(loaded.predict_proba(X), probs, atol=1e-6)
    assert np.array_equal(ensemble_votes(loaded, X), ensemble_predictions(teachers, X))
