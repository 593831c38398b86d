"""MST synthetic transfer data: its accountant, its leak guard, the domain it works on."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from distillguard.config import SyntheticTransferConfig
from distillguard.data.leakguard_tabular import find_tabular_leaks
from distillguard.data.synthetic import fit_mst, spent_rho
from distillguard.data.synthetic_domain import compression, decode, encode, table_attributes, value_grid
from distillguard.data.synthetic_transfer import synthetic_transfer
from distillguard.data.types import Schema
from distillguard.errors import ConfigError, DataError
from distillguard.privacy.zcdp import zcdp_rho

ENCODING = {"kind": "table", "columns": [
    {"name": "age", "type": "numeric", "fill": 40.0}, {"name": "years", "type": "numeric", "fill": 10.0},
    {"name": "city", "type": "categorical", "categories": ["a", "b", "c"]}]}
SCHEMA = Schema(["age", "years", "city=a", "city=b", "city=c"], ["no", "yes"], (5,), ENCODING)


def _table(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Integer ages and years (on the grid: exact copies happen), a city, a label driven by age and city."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n)
    years = np.clip(age - 18 - rng.integers(0, 10, n), 0, None)
    city = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    y = ((age > 50) ^ (city == 2)).astype(np.int64)
    return np.c_[age, years, np.eye(3)[city]].astype(np.float32), y


@pytest.fixture(scope="module")
def fitted():
    """One generator for the tests that only read it (a fit compiles Private-PGM's model: seconds)."""
    X, y = _table()
    return X, y, fit_mst(X, y, attrs=table_attributes(SCHEMA), epsilon=20.0, delta=1e-6, seed=1)


def test_the_generator_spends_exactly_the_budget_the_accountant_gives(fitted):
    gen = fitted[2]
    rho = zcdp_rho(20.0, 1e-6)
    r = len(table_attributes(SCHEMA))  # 3 features + label
    sigma = math.sqrt(3 / (2 * rho))
    # MST (McKenna et al. 2021): r one-way measurements at σ√r, r − 1 tree edges at σ√(r − 1)
    # and r − 1 exponential-mechanism draws at ε₀ = √(8(ρ/3)/(r − 1)): ρ/3 each
    assert gen.sigmas == pytest.approx([sigma * math.sqrt(r)] * r + [sigma * math.sqrt(r - 1)] * (r - 1))
    assert gen.em_epsilons == pytest.approx([math.sqrt(8 * rho / 3 / (r - 1))] * (r - 1))
    assert len(gen.tree) == r - 1 and len({frozenset(e) for e in gen.tree}) == r - 1
    record = gen.record()
    assert spent_rho(gen.sigmas, gen.em_epsilons) == pytest.approx(rho, rel=1e-12)
    assert record["epsilon_spent"] == pytest.approx(20.0, rel=1e-9) and record["delta"] == 1e-6


def test_the_synthetic_rows_keep_the_table_structure(fitted):
    X, y, gen = fitted
    Z, labels = gen.sample(3000, seed=2)
    assert Z.shape == (3000, 5) and Z.dtype == np.float32
    assert set(np.unique(Z[:, 2:].sum(axis=1))) <= {0.0, 1.0}  # one-hot blocks stay one-hot (or none)
    assert abs(Z[:, 0].mean() - X[:, 0].mean()) < 4  # ages 18-89, mean ≈ 53
    # ~650 grid values at a 3σ threshold: a spurious kept value now and then (MST's rule), rarely drawn
    assert np.mean((Z[:, 0] >= 18) & (Z[:, 0] <= 89)) > 0.99
    assert abs(Z[:, 2].mean() - 0.5) < 0.06  # city a's share
    # a classifier fitted on the synthetic rows and the generator's labels predicts the real labels:
    # the label's dependence on age and city survived; chance is 0.5
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(Z, labels)
    assert model.score(X, y) > 0.7


def test_same_seed_same_generator_and_rows(fitted):
    X, y, gen = fitted
    again = fit_mst(X, y, attrs=table_attributes(SCHEMA), epsilon=20.0, delta=1e-6, seed=1)
    assert again.tree == gen.tree
    assert np.array_equal(again.sample(200, seed=1)[0], gen.sample(200, seed=1)[0])
    assert not np.array_equal(gen.sample(200, seed=1)[0], gen.sample(200, seed=2)[0])


def test_the_synthetic_set_passes_the_leak_guard_and_copies_are_dropped_and_counted():
    X, y = _table()
    other, _ = _table(seed=5)
    cfg = SyntheticTransferConfig(epsilon=20.0, rows=800)
    out = synthetic_transfer(X, y, schema=SCHEMA, cfg=cfg, delta=1e-6, private={"members": X, "nonmembers": other},
                             leak_threshold=0.02, seed=3)
    assert out.X.shape == (800, 5)
    report = find_tabular_leaks(out.X, {"members": X, "nonmembers": other}, relative_threshold=0.02, seed=0)
    assert report.transfer_rows.size == 0  # nothing left that the guard would flag
    record = out.record
    assert record["dropped_exact"] > 0  # integer ages and years: some draws were exact copies
    assert record["drawn"] - record["dropped_copies"] >= 800 and record["mechanism"] == "mst"


def test_a_generator_that_only_copies_is_refused_with_the_fix():
    rng = np.random.default_rng(0)
    X = np.c_[rng.integers(0, 2, 600), rng.integers(0, 2, 600)].astype(np.float32)
    schema = Schema(["a", "b"], [0, 1], (2,))
    with pytest.raises(DataError, match=r"synthetic rows copy a private record .* lower rows, or epsilon"):
        synthetic_transfer(X, (X[:, 0] > 0).astype(int), schema=schema, cfg=SyntheticTransferConfig(rows=50),
                           delta=1e-6, private={"members": X}, leak_threshold=0.02, seed=0)


def test_the_domain_is_fixed_and_compression_merges_to_the_nearest_kept_value():
    grid = value_grid()
    assert np.all(np.diff(grid) > 0) and 0.0 in grid and {1.0, 17.0, 100.0, 2.25} <= set(grid.tolist())
    X = np.array([[17.0, 3.3, 0, 1, 0], [-2.0, 1e12, 0, 0, 0]], dtype=np.float32)
    codes = encode(X, np.array([1, 0]), table_attributes(SCHEMA))
    back = decode(codes, table_attributes(SCHEMA), n_features=5)
    assert back[0].tolist() == [17.0, 3.25, 0, 1, 0] and back[1, 0] == -2.0 and back[1, 1] == grid[-1]
    assert back[1, 2:].tolist() == [0, 0, 0]  # no category: the "none" value
    comp = compression(np.array([0.0, 9.0, 1.0, 0.0, 0.0, 12.0, 0.0]), "numeric", threshold=5.0)
    assert comp.mapping.tolist() == [0, 0, 0, 0, 1, 1, 1] and comp.kept.tolist() == [1, 5]
    cat = compression(np.array([9.0, 1.0, 12.0, 0.0]), "onehot", threshold=5.0)
    assert cat.mapping.tolist() == [0, 2, 1, 2] and cat.kept.tolist() == [0, 2, -1] and cat.rest.tolist() == [1, 3]


def test_missing_mbi_is_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mbi", None)  # import mbi raises ImportError
    X, y = _table(n=50)
    with pytest.raises(ConfigError, match=r'pip install "distillguard\[synth\]"'):
        fit_mst(X, y, attrs=table_attributes(SCHEMA), epsilon=1.0, delta=1e-6, seed=0)


def test_a_table_too_wide_for_mst_is_refused():
    schema = Schema([f"f{i}" for i in range(80)], [0, 1], (80,))
    with pytest.raises(ConfigError, match="81 attributes .* at most 64"):
        fit_mst(np.zeros((10, 80), np.float32), np.zeros(10, int), attrs=table_attributes(schema), epsilon=1.0,
                delta=1e-6, seed=0)
