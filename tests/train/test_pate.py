"""PATE teachers: partitions and the ensemble trained on them (the accounting is tested in tests/privacy)."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.config import TeacherConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard.errors import ConfigError
from distillguard.privacy.aggregation import plurality, vote_counts
from distillguard.train.pate import ensemble_predictions, partition_rows, train_teacher_ensemble


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


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
