"""Transfer-side defenses select the records their rule names, and only those."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.data.transfer_selection import far_from_private, lowest_entropy, random_subset
from distillguard.errors import ConfigError


def test_random_subset_is_seeded_sorted_and_sized() -> None:
    a = random_subset(100, size=30, rng=np.random.default_rng(0))
    assert len(a) == 30 == len(set(a)) and (np.diff(a) > 0).all()
    assert np.array_equal(a, random_subset(100, size=30, rng=np.random.default_rng(0)))
    assert np.array_equal(random_subset(10, size=30, rng=np.random.default_rng(0)), np.arange(10))


def test_lowest_entropy_keeps_the_confident_records() -> None:
    rng = np.random.default_rng(0)
    confident = np.eye(5)[rng.integers(0, 5, 40)] * 20.0   # near one-hot
    unsure = rng.normal(scale=0.1, size=(60, 5))            # near uniform
    logits = np.concatenate([unsure[:30], confident, unsure[30:]])
    kept = lowest_entropy(logits, fraction=0.4)
    assert np.array_equal(kept, np.arange(30, 70))


def test_far_from_private_drops_the_nearest_records() -> None:
    rng = np.random.default_rng(0)
    private = rng.normal(size=(200, 4))
    near = private[:10] + 0.01 * rng.normal(size=(10, 4))
    far = rng.normal(size=(90, 4)) + 8.0
    transfer = np.concatenate([far[:45], near, far[45:]])
    kept = far_from_private(transfer, private, drop_fraction=0.1)
    assert len(kept) == 90 and not set(range(45, 55)) & set(kept.tolist())
    assert np.array_equal(far_from_private(transfer, private, drop_fraction=0.0), np.arange(100))


@pytest.mark.parametrize("call", [
    lambda: lowest_entropy(np.zeros((3, 2)), fraction=0.0),
    lambda: far_from_private(np.zeros((3, 2)), np.zeros((3, 2)), drop_fraction=1.0),
    lambda: random_subset(5, size=0, rng=np.random.default_rng(0)),
])
def test_bad_fractions_are_config_errors(call) -> None:
    with pytest.raises(ConfigError):
        call()
