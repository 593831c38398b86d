"""Hostile input, property-based: every case ends in our one-line error or a valid result.

Random TOML documents and values of every type go through the spec loader; random
tables (NaN, inf, huge values, text, wrong shapes, bad labels, non-UTF-8 bytes) go
through the data adapters. Nothing may escape as another exception type.
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distillguard.config import Spec, load_spec
from distillguard.data import load_members, load_role
from distillguard.errors import DistillGuardError

SECTIONS = ["run", "data", "teacher", "student", "distill", "privacy", "audit", "gate", "bogus"]
KEYS = ["name", "seed", "builtin", "format", "label", "members", "epochs", "hidden", "lr", "temperature", "alpha",
        "shadows", "canaries", "attack", "max_auc", "max_tpr_at_fpr", "kind", "path", "mechanism", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.integers(-5, 300), max_size=4))
documents = st.dictionaries(st.sampled_from(SECTIONS), st.dictionaries(st.sampled_from(KEYS), scalars, max_size=5),
                            max_size=5)
CASES = {"n": 0}


def _check_message(error: DistillGuardError) -> None:
    message = str(error)
    assert message and "\n" not in message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_random_specs_load_or_fail_cleanly(tmp_path, doc):
    CASES["n"] += 1
    clean = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in doc.items()}
    path = tmp_path / "spec.toml"
    path.write_text(tomli_w.dumps(clean))
    try:
        assert isinstance(load_spec(path), Spec)
    except DistillGuardError as error:
        _check_message(error)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_random_bytes_as_spec(tmp_path, raw):
    path = tmp_path / "spec.toml"
    path.write_bytes(raw)
    try:
        load_spec(path)
    except DistillGuardError as error:
        _check_message(error)


cells = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
                  st.text(alphabet=string.printable, max_size=5), st.none())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(cells, min_size=3, max_size=3), min_size=0, max_size=8),
       labels=st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=2), st.none()), min_size=0, max_size=8),
       fmt=st.sampled_from(["csv", "parquet", "npz"]), drop_label=st.booleans())
def test_random_tables_load_or_fail_cleanly(tmp_path, rows, labels, fmt, drop_label):
    n = min(len(rows), len(labels))
    frame = pd.DataFrame(rows[:n], columns=["a", "b", "c"]) if n else pd.DataFrame(columns=["a", "b", "c"])
    if not drop_label:
        frame["y"] = labels[:n]
    for role in ("members", "nonmembers", "transfer", "test"):
        path = tmp_path / f"{role}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "parquet":
            try:
                frame.astype(str).to_parquet(path) if frame.dtypes.eq(object).any() else frame.to_parquet(path)
            except Exception:  # pandas/pyarrow could not even write it: write garbage instead
                path.write_bytes(b"PAR1 not really")
        else:
            try:
                np.savez(path, X=frame[["a", "b", "c"]].to_numpy(dtype=float), **({} if drop_label else {"y": np.asarray(labels[:n], dtype=object).astype(str)}))
            except (ValueError, TypeError):
                path.write_bytes(b"\x00\x01 not an npz")
    text = (f'[data]\nformat = "{fmt}"\nmembers = "members.{fmt}"\nnonmembers = "nonmembers.{fmt}"\n'
            f'transfer = "transfer.{fmt}"\ntest = "test.{fmt}"\n')
    (tmp_path / "spec.toml").write_text(text)
    try:
        spec = load_spec(tmp_path / "spec.toml")
        schema, members = load_members(spec.data, seed=0)
        assert np.isfinite(members.X).all() and members.X.dtype == np.float32
        assert members.y is not None and members.y.min() >= 0 and members.y.max() < schema.n_classes
        for role in ("nonmembers", "transfer", "test"):
            load_role(spec.data, role, schema=schema, seed=0)
    except DistillGuardError as error:
        _check_message(error)


def test_non_utf8_csv(tmp_path):
    (tmp_path / "members.csv").write_bytes(b"a,b,y\n1,2,\xff\xfe\n")
    for role in ("nonmembers", "transfer", "test"):
        (tmp_path / f"{role}.csv").write_bytes(b"a,b,y\n1,2,3\n")
    (tmp_path / "spec.toml").write_text('[data]\nmembers = "members.csv"\nnonmembers = "nonmembers.csv"\n'
                                        'transfer = "transfer.csv"\ntest = "test.csv"\n')
    try:
        load_members(load_spec(tmp_path / "spec.toml").data, seed=0)
    except DistillGuardError as error:
        _check_message(error)


def test_hostile_suite_ran_its_cases():
    # Runs after the property tests in file order: report how many spec documents were tried.
    print(f"hostile spec documents tried: {CASES['n']}")
    assert CASES["n"] >= 100
