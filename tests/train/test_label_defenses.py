"""Each soft-label knob changes what it should, and the KD loss stays finite on its output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillguard.errors import ConfigError
from distillguard.train.kd import kd_loss
from distillguard.train.label_defenses import (
    LOG_FLOOR,
    average_ensemble,
    defend_soft_labels,
    entropy_bits,
    softmax,
)


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(123).normal(scale=3.0, size=(200, 10)).astype(np.float32)


def test_all_knobs_off_is_the_teachers_distribution_and_the_same_kd_loss(logits) -> None:
    targets = defend_soft_labels(logits)
    np.testing.assert_allclose(softmax(targets), softmax(logits), atol=1e-6)
    student = torch.randn(200, 10)
    for t in (1.0, 4.0):
        a = kd_loss(student, torch.from_numpy(logits), temperature=t)
        b = kd_loss(student, torch.from_numpy(targets), temperature=t)
        assert abs(float(a) - float(b)) < 1e-5


def test_temperature_raises_the_entropy_of_the_labels(logits) -> None:
    h = [entropy_bits(logits, temperature=t).mean() for t in (0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(h, h[1:])), h
    assert h[-1] < np.log2(10)  # still below the uniform distribution's


def test_top_k_keeps_exactly_k_classes_and_the_argmax(logits) -> None:
    p = softmax(defend_soft_labels(logits, top_k=3))
    assert ((p > 0).sum(axis=1) == 3).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert (p.argmax(axis=1) == logits.argmax(axis=1)).all()
    assert entropy_bits(defend_soft_labels(logits, top_k=3)).max() <= np.log2(3) + 1e-6


def test_rounding_releases_multiples_of_the_step(logits) -> None:
    p = softmax(defend_soft_labels(logits, round_to=0.1))
    # Rounding gives integer counts k of the step; renormalizing gives k / sum(k), so each row
    # is a set of integers over a common denominator of at most 1/step + C/2.
    for row in p:
        assert any(np.allclose(row * K, np.round(row * K), atol=1e-4) for K in range(1, 16)), row
    assert len(np.unique(np.round(p, 6))) < 60  # a coarse alphabet, not 2,000 distinct values
    assert (p > 0).sum(axis=1).min() >= 1


def test_rounding_never_leaves_an_empty_row() -> None:
    flat = np.zeros((1, 50), dtype=np.float32)  # every class 0.02, rounds to 0 at step 0.1
    p = softmax(defend_soft_labels(flat, round_to=0.1))
    assert (p > 0).sum() == 1 and abs(p.sum() - 1) < 1e-9


def test_hard_labels_are_one_hot_argmax(logits) -> None:
    p = softmax(defend_soft_labels(logits, hard=True))
    assert ((p > 0.999) == (np.arange(10) == logits.argmax(axis=1)[:, None])).all()
    assert entropy_bits(defend_soft_labels(logits, hard=True)).max() < 1e-6


@pytest.mark.parametrize("weight", [0.05, 0.3])
def test_uniform_mixing_sets_the_minimum_probability(logits, weight) -> None:
    p = softmax(defend_soft_labels(logits, mix_uniform=weight))
    assert p.min() >= weight / 10 - 1e-7
    assert p.min() < weight / 10 + 1e-3  # the floor is reached, not just respected
    assert (p.argmax(axis=1) == logits.argmax(axis=1)).all()
    # Mixing is applied last, so it floors even top-k's zeros.
    assert softmax(defend_soft_labels(logits, top_k=2, mix_uniform=weight)).min() >= weight / 10 - 1e-7


def test_logit_noise_is_seeded_and_grows_with_sigma(logits) -> None:
    a = defend_soft_labels(logits, logit_noise=1.0, seed=3)
    assert np.array_equal(a, defend_soft_labels(logits, logit_noise=1.0, seed=3))
    assert not np.array_equal(a, defend_soft_labels(logits, logit_noise=1.0, seed=4))
    flips = [(defend_soft_labels(logits, logit_noise=s, seed=0).argmax(1) != logits.argmax(1)).mean()
             for s in (0.0, 0.5, 3.0, 30.0)]
    assert flips[0] == 0 and all(a <= b for a, b in zip(flips, flips[1:])) and flips[-1] > 0.5


def test_kd_loss_is_finite_with_gradients_on_truncated_targets(logits) -> None:
    targets = torch.from_numpy(defend_soft_labels(logits, top_k=1))
    assert float(targets.min()) == LOG_FLOOR
    student = torch.randn(200, 10, requires_grad=True)
    for t in (0.5, 1.0, 8.0):
        loss = kd_loss(student, targets, temperature=t)
        (grad,) = torch.autograd.grad(loss, student)
        assert torch.isfinite(loss) and torch.isfinite(grad).all() and float(grad.abs().sum()) > 0


def test_ensemble_moves_by_at_most_one_over_n_when_one_teacher_changes() -> None:
    rng = np.random.default_rng(1)
    n_teachers, n, C = 5, 300, 10
    teachers = rng.normal(scale=4.0, size=(n_teachers, n, C))
    base = softmax(average_ensemble(teachers))
    worst = 0.0
    for trial in range(20):
        changed = teachers.copy()
        # The worst a record can do: make its partition's teacher say anything at all.
        changed[trial % n_teachers] = rng.normal(scale=50.0, size=(n, C))
        moved = np.abs(softmax(average_ensemble(changed)) - base)
        tv = 0.5 * moved.sum(axis=1)
        assert moved.max() <= 1 / n_teachers + 1e-6 and tv.max() <= 1 / n_teachers + 1e-6
        worst = max(worst, tv.max())
    assert worst > 0.5 / n_teachers  # the bound is approached, so the test would see a larger move


@pytest.mark.parametrize("kwargs", [{"top_k": 0}, {"round_to": 0.0}, {"round_to": 1.5}, {"mix_uniform": 1.5},
                                    {"logit_noise": -1.0}])
def test_bad_knob_values_are_config_errors(logits, kwargs) -> None:
    with pytest.raises(ConfigError):
        defend_soft_labels(logits, **kwargs)
