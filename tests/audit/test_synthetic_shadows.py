"""The audit's shadows replay the DP synthetic transfer set: each fits its own generator on its
own training set, and releases its teacher's labels on its own synthetic rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import distillguard.audit.synthetic_shadows as synthetic_shadows
from distillguard.audit.shadows import AuditPool, _shadow_training_set, paired_membership, plant_canaries, replay_releases
from distillguard.config import parse_spec
from distillguard.data.synthetic_transfer import SyntheticTransfer
from distillguard.data.types import Schema
from distillguard.errors import ConfigError

ROWS = 10


def _setup(**synthetic):
    rng = np.random.default_rng(0)
    n, d = 40, 5
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    pool = AuditPool(X, y, np.r_[np.ones(20, bool), np.zeros(20, bool)], [f"r{i}" for i in range(n)])
    membership = paired_membership(n, 4, seed=0)
    canaries = plant_canaries(X, n_classes=3, count=4, duplicates=2, n_shadows=4, seed=0)
    spec = parse_spec({"teacher": {"hidden": [8], "epochs": 2},
                       "transfer": {"synthetic": {"rows": ROWS, "epsilon": 2.0, **synthetic}},
                       "softlabels": {"labels": "soft"},  # the released targets are then the logits themselves
                       "audit": {"shadows": 4, "canaries": 4, "bootstrap": 0}}, base_dir=Path("/tmp"))
    return pool, membership, canaries, spec, Schema([f"f{i}" for i in range(d)], [0, 1, 2], (d,))


def test_each_shadow_generator_sees_exactly_its_own_training_set(monkeypatch):
    pool, membership, canaries, spec, schema = _setup()
    seen = []

    def fake(X, y, *, schema, cfg, delta, private, leak_threshold, seed):
        seen.append((np.array(X), np.array(y), delta, private, seed))
        return SyntheticTransfer(np.full((cfg.rows, X.shape[1]), len(seen), np.float32), {})

    monkeypatch.setattr(synthetic_shadows, "synthetic_transfer", fake)
    out = synthetic_shadows.shadow_synthetic_transfer(pool, canaries, membership, spec=spec, schema=schema)
    assert out.shape == (4 * ROWS, 5) and [float(out[s * ROWS, 0]) for s in range(4)] == [1, 2, 3, 4]
    for s, (X, y, delta, private, seed) in enumerate(seen):
        own, own_y, _, _ = _shadow_training_set(s, pool, canaries, membership, val_fraction=0.0, seed=0)
        assert np.array_equal(X, own) and np.array_equal(y, own_y)  # its pool half and its canary slots
        rows = {r.tobytes() for r in X}
        assert not rows & {r.tobytes() for r in pool.X[~membership[s]]}  # never a record it does not train on
        assert delta == min(1 / (10 * len(X)), 1e-5)
        assert np.array_equal(private["pool"], pool.X) and len(private["canaries"]) == 2 * len(canaries)
    assert len({seed for *_, seed in seen}) == 4  # each shadow its own noise


def test_each_shadow_releases_on_its_own_block_of_synthetic_rows():
    pool, membership, canaries, spec, schema = _setup()
    transfer_X = np.random.default_rng(1).normal(size=(4 * ROWS, 5)).astype(np.float32)
    logits = np.random.default_rng(2).normal(size=(2, 4 * ROWS, 3))  # shadows 1 and 3, on every block
    releases = replay_releases(logits, transfer_X=transfer_X, pool=pool, canaries=canaries, membership=membership,
                               spec=spec, shadow_ids=[1, 3], per_shadow=ROWS)
    for i, (s, out) in enumerate(zip([1, 3], releases)):
        assert out.rows.tolist() == list(range(s * ROWS, (s + 1) * ROWS))
        assert np.allclose(out.targets, logits[i, s * ROWS:(s + 1) * ROWS])


def test_bad_synthetic_settings_are_one_line_errors():
    with pytest.raises(ConfigError) as error:
        parse_spec({"transfer": {"synthetic": {"mechanism": "gan", "epsilon": -1, "rows": 5, "colour": 1}}},
                   base_dir=Path("/tmp"))
    message = str(error.value)
    assert "\n" not in message.strip()  # every problem at once, on one line
    for part in ("[transfer].synthetic.mechanism", "'mst'", "[transfer].synthetic.epsilon", "[transfer].synthetic.rows",
                 "[transfer].synthetic.colour"):
        assert part in message
