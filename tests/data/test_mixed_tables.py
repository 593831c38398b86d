"""Mixed-type tables: the encoder is fitted on the transfer set only, stored as JSON, and
agrees with scikit-learn; one table is cut into four roles by a seeded, recorded split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillguard.config import load_spec
from distillguard.data import load_members, load_role
from distillguard.data.encoding import TableEncoder, needs_encoding
from distillguard.data.sources import split_record, split_rows
from distillguard.errors import ConfigError, DataError


def _mixed(n: int, *, seed: int, colors=("red", "green", "blue")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 90, n).astype(float),
        "color": rng.choice(colors, n),
        "smoker": rng.choice(["yes", "no"], n),
        "score": rng.normal(size=n),
    })
    frame.loc[rng.random(n) < 0.1, "age"] = np.nan
    frame.loc[rng.random(n) < 0.1, "color"] = None
    frame["label"] = np.where(frame["score"] + (frame["color"] == "red") > 0.5, "sick", "well")
    return frame


def test_encoder_matches_sklearn_and_round_trips_as_json():
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    public = _mixed(300, seed=0).drop(columns=["label"])
    encoder = TableEncoder.fit(public)
    rebuilt = TableEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    other = _mixed(50, seed=1, colors=("red", "purple"))  # purple: never seen in the public rows
    X = rebuilt.transform(other.drop(columns=["label"]), path="x")
    assert X.shape == (50, len(encoder.output_names)) and np.isfinite(X).all()
    # numeric: median imputation, as SimpleImputer does
    expected_age = SimpleImputer(strategy="median").fit(public[["age"]]).transform(other[["age"]])[:, 0]
    np.testing.assert_allclose(X[:, encoder.output_names.index("age")], expected_age, rtol=1e-6)
    # categorical: one-hot with unknown categories as zeros, as OneHotEncoder(handle_unknown="ignore")
    codes = lambda s: np.asarray(["" if pd.isna(v) else v for v in s], dtype=object).reshape(-1, 1)  # noqa: E731
    onehot = OneHotEncoder(handle_unknown="ignore").fit(codes(public["color"]))
    cols = [encoder.output_names.index(f"color={c}") for c in onehot.categories_[0]]
    np.testing.assert_array_equal(X[:, cols], onehot.transform(codes(other["color"])).toarray())
    purple = (other["color"] == "purple").to_numpy()
    assert purple.any() and (X[purple][:, cols] == 0).all()
    assert set(X[:, encoder.output_names.index("smoker")]) <= {0.0, 1.0}


def test_numeric_tables_keep_the_plain_path():
    assert not needs_encoding(pd.DataFrame({"a": [1.0, 2.0], "b": [1, 2], "c": [True, False]}))
    assert needs_encoding(pd.DataFrame({"a": [1.0, np.nan]}))
    assert needs_encoding(pd.DataFrame({"a": ["x", "y"]}))


def test_a_bad_value_names_the_column_and_row():
    encoder = TableEncoder.fit(pd.DataFrame({"age": [1.0, 2.0, np.nan], "c": ["a", "b", "a"]}))
    with pytest.raises(DataError, match=r"f\.csv: column 'age' is not numeric \(finite, float32 range\) \(row 11: 'old'\)"):
        encoder.transform(pd.DataFrame({"age": [1.0, "old"], "c": ["a", "b"]}), path="f.csv", first_row=10)


def _write_files(folder: Path) -> None:
    members = _mixed(120, seed=2)
    members.loc[:9, "color"] = "members-only-color"
    members.to_csv(folder / "members.csv", index=False)
    _mixed(120, seed=3).to_csv(folder / "nonmembers.csv", index=False)
    _mixed(300, seed=4).drop(columns=["label"]).to_parquet(folder / "transfer.parquet")
    _mixed(100, seed=5).to_csv(folder / "test.csv", index=False)
    (folder / "spec.toml").write_text(
        '[run]\nname = "m"\n[data]\nformat = "csv"\nlabel = "label"\nmembers = "members.csv"\n'
        'nonmembers = "nonmembers.csv"\ntransfer = "transfer.csv"\ntest = "test.csv"\n')


def test_a_category_only_in_members_never_reaches_the_schema(tmp_path):
    _write_files(tmp_path)
    _mixed(300, seed=4).drop(columns=["label"]).to_csv(tmp_path / "transfer.csv", index=False)
    spec = load_spec(tmp_path / "spec.toml")
    schema, members = load_members(spec.data, seed=0)
    text = json.dumps(schema.to_dict())
    assert "members-only-color" not in text
    assert schema.raw_feature_names == ["age", "color", "smoker", "score"]
    assert schema.classes == ["sick", "well"]
    # the member rows with the private category encode as "no known colour"
    colors = [schema.feature_names.index(n) for n in schema.feature_names if n.startswith("color=")]
    assert (members.X[:10][:, colors] == 0).all() and (members.X[10:][:, colors].sum(axis=1) == 1).all()
    test = load_role(spec.data, "test", schema=schema, seed=0)
    assert test.X.shape == (100, len(schema.feature_names)) and test.y is not None


def _table_spec(folder: Path, split: str = "") -> Path:
    frame = _mixed(1000, seed=6)
    frame.to_csv(folder / "table.csv", index=False)
    path = folder / "spec.toml"
    path.write_text(f'[run]\nname = "t"\n[data]\ntable = "table.csv"\nlabel = "label"\n{split}')
    return path


def test_one_table_split_is_seeded_stratified_and_recorded(tmp_path):
    spec = load_spec(_table_spec(tmp_path))
    first, again, other = (split_record(spec.data, seed=s) for s in (0, 0, 1))
    assert first == again and first["rows"] != other["rows"]
    rows = first["rows"]
    sizes = {role: len(r) for role, r in rows.items()}
    assert sizes == {"members": 250, "nonmembers": 250, "transfer": 350, "test": 150}
    every = np.concatenate(list(rows.values()))
    assert len(set(every.tolist())) == len(every) == 1000  # disjoint, all rows used
    assert first["summary"]["stratified"] is True and first["summary"]["seed"] == 0
    labels = pd.read_csv(tmp_path / "table.csv")["label"].to_numpy()
    share = (labels == "sick").mean()
    for role, r in rows.items():  # stratified: each role's class share within a row of the table's
        assert abs((labels[r] == "sick").mean() - share) <= 1.5 / len(r), role
    _, members = load_members(spec.data, seed=0)
    assert len(members) == 250


def test_split_sizes_and_bad_splits(tmp_path):
    spec = load_spec(_table_spec(tmp_path, "split = {members = 100, nonmembers = 100, transfer = 300, test = 50}\n"))
    assert {r: len(v) for r, v in split_record(spec.data, seed=0)["rows"].items()} == {
        "members": 100, "nonmembers": 100, "transfer": 300, "test": 50}
    with pytest.raises(ConfigError, match="all as row counts"):
        load_spec(_table_spec(tmp_path, "split = {members = 100, nonmembers = 0.2, transfer = 300, test = 50}\n"))
    with pytest.raises(ConfigError, match="fractions sum to 1.200"):
        load_spec(_table_spec(tmp_path, "split = {members = 0.5, nonmembers = 0.3, transfer = 0.3, test = 0.1}\n"))
    big = load_spec(_table_spec(tmp_path, "split = {members = 900, nonmembers = 100, transfer = 300, test = 50}\n"))
    with pytest.raises(ConfigError, match="has 1000 labelled rows; the roles ask for 1350"):
        load_members(big.data, seed=0)


def test_split_falls_back_to_a_shuffle_when_a_class_is_too_rare():
    labels = np.array(["a"] * 50 + ["b"])
    rows, stratified = split_rows(labels, {"members": 10, "nonmembers": 10, "transfer": 10, "test": 10}, seed=0)
    assert not stratified and sum(len(r) for r in rows.values()) == 40
