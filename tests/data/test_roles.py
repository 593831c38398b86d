"""Data adapters: the four roles from CSV/Parquet/NPZ, built-ins, and clear errors."""

import numpy as np
import pandas as pd
import pytest

from distillguard.config import DataConfig, SplitSizes, load_spec
from distillguard.data import load_members, load_role
from distillguard.errors import DataError
from tests_support import spec_with


def test_csv_roles_share_the_members_schema(tiny_csv_spec):
    spec = load_spec(tiny_csv_spec)
    schema, members = load_members(spec.data, seed=0)
    assert schema.feature_names == [f"f{i}" for i in range(12)]
    assert schema.classes == ["high", "low", "mid"]
    transfer = load_role(spec.data, "transfer", schema=schema, seed=0)
    assert transfer.y is None and transfer.X.shape == (600, 12) and members.X.dtype == np.float32
    test = load_role(spec.data, "test", schema=schema, seed=0)
    assert set(np.unique(test.y)) <= {0, 1, 2}


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_parquet_and_npz_read_the_same_numbers(tmp_path, csv_splits, fmt):
    frames = {role: pd.read_csv(path) for role, path in csv_splits.items()}
    for role, frame in frames.items():
        if fmt == "parquet":
            frame.to_parquet(tmp_path / f"{role}.{fmt}")
        else:
            arrays = {"X": frame.drop(columns=["y"], errors="ignore").to_numpy()}
            if "y" in frame:
                arrays["y"] = frame["y"].map({"low": 0, "mid": 1, "high": 2}).to_numpy()
            np.savez(tmp_path / f"{role}.{fmt}", **arrays)
    spec = spec_with(tmp_path, fmt)
    schema, members = load_members(spec.data, seed=0)
    np.testing.assert_allclose(members.X, frames["members"].drop(columns=["y"]).to_numpy(), rtol=1e-6)
    assert len(load_role(spec.data, "transfer", schema=schema, seed=0)) == 600


def test_purchase_synth_is_seeded_and_roles_differ():
    cfg = DataConfig(builtin="purchase-synth", sizes=SplitSizes(members=50, nonmembers=50, transfer=50, test=50))
    schema, a = load_members(cfg, seed=0)
    _, b = load_members(cfg, seed=0)
    np.testing.assert_array_equal(a.X, b.X)
    transfer = load_role(cfg, "transfer", schema=schema, seed=0)
    assert not np.array_equal(a.X, transfer.X)
    assert set(np.unique(a.X)) <= {0.0, 1.0} and schema.n_classes == 100


def test_digits_roles_are_disjoint():
    cfg = DataConfig(builtin="digits")
    schema, members = load_members(cfg, seed=0)
    transfer = load_role(cfg, "transfer", schema=schema, seed=0)
    rows = {m.tobytes() for m in members.X}
    overlap = sum(t.tobytes() in rows for t in transfer.X)
    assert schema.input_shape == (1, 8, 8) and overlap <= 5  # digits has a few duplicate images


def _error(tmp_path, csv_splits, mutate) -> str:
    mutate(csv_splits)
    spec = spec_with(tmp_path, "csv")
    with pytest.raises(DataError) as info:
        schema, _ = load_members(spec.data, seed=0)
        for role in ("nonmembers", "transfer", "test"):
            load_role(spec.data, role, schema=schema, seed=0)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_nan_cell_names_file_column_and_row(tmp_path, csv_splits):
    def nan(paths):
        frame = pd.read_csv(paths["test"])
        frame.loc[7, "f3"] = np.nan
        frame.to_csv(paths["test"], index=False)
    message = _error(tmp_path, csv_splits, nan)
    assert "test.csv" in message and "'f3'" in message and "line 9" in message  # data row 7: line 9 (header = 1)


def test_missing_label_column(tmp_path, csv_splits):
    message = _error(tmp_path, csv_splits, lambda p: pd.read_csv(p["members"]).drop(columns=["y"]).to_csv(p["members"], index=False))
    assert "members.csv" in message and "label column 'y'" in message


def test_empty_file(tmp_path, csv_splits):
    message = _error(tmp_path, csv_splits, lambda p: p["nonmembers"].write_text(""))
    assert "nonmembers.csv" in message and "empty" in message


def test_missing_file(tmp_path, csv_splits):
    message = _error(tmp_path, csv_splits, lambda p: p["transfer"].unlink())
    assert "transfer.csv" in message and "not found" in message


def test_text_in_numeric_column(tmp_path, csv_splits):
    def text(paths):
        frame = pd.read_csv(paths["members"])
        frame["f0"] = frame["f0"].astype(object)
        frame.loc[3, "f0"] = "abc"
        frame.to_csv(paths["members"], index=False)
    message = _error(tmp_path, csv_splits, text)
    assert "'f0'" in message and "not numeric" in message and "'abc'" in message


def test_unknown_test_label(tmp_path, csv_splits):
    def relabel(paths):
        frame = pd.read_csv(paths["test"])
        frame.loc[0, "y"] = "zzz"
        frame.to_csv(paths["test"], index=False)
    message = _error(tmp_path, csv_splits, relabel)
    assert "'zzz'" in message and "line 2" in message  # the first record is line 2 of the file


def test_transfer_columns_must_match(tmp_path, csv_splits):
    message = _error(tmp_path, csv_splits, lambda p: pd.read_csv(p["transfer"]).drop(columns=["f5"]).to_csv(p["transfer"], index=False))
    assert "transfer.csv" in message and "f5" in message


def _renamed_label(paths, name, n_extra=0):
    for role in ("members", "nonmembers", "test"):
        frame = pd.read_csv(paths[role]).rename(columns={"y": name})
        for i in range(n_extra):
            frame[f"extra{i}"] = 0.0
        frame.to_csv(paths[role], index=False)


def test_wrong_label_case_suggests_the_column_and_lists_all_columns(tmp_path, csv_splits):
    """The issue's case: ``Diagnosis`` for ``diagnosis`` in a 31-column file."""
    _renamed_label(csv_splits, "diagnosis", n_extra=18)
    data = spec_with(tmp_path, "csv").data.model_copy(update={"label": "Diagnosis"})
    with pytest.raises(DataError) as info:
        load_members(data, seed=0)
    message = str(info.value)
    assert "label column 'Diagnosis' ([data].label) not found (did you mean 'diagnosis'?)" in message
    assert all(f"'f{i}'" in message for i in range(12)) and "'extra17'" in message and "…" not in message


def test_many_columns_are_cut_with_an_ellipsis_and_a_count(tmp_path, csv_splits):
    message = _error(tmp_path, csv_splits, lambda p: _renamed_label(p, "target", n_extra=40))
    assert "'f0'" in message and "… (13 more)" in message  # 12 + 1 + 40 = 53 columns, 40 shown


def test_misspelt_label_gets_an_edit_distance_suggestion(tmp_path, csv_splits):
    _renamed_label(csv_splits, "label")
    data = spec_with(tmp_path, "csv").data.model_copy(update={"label": "lable"})
    with pytest.raises(DataError, match=r"not found \(did you mean 'label'\?\)"):
        load_members(data, seed=0)


def _semicolons(role):
    return lambda p: pd.read_csv(p[role]).to_csv(p[role], index=False, sep=";")


def test_semicolon_separated_members_get_a_delimiter_hint(tmp_path, csv_splits):
    message = _error(tmp_path, csv_splits, _semicolons("members"))
    assert "members.csv" in message and "looks semicolon-separated" in message and "sep=';'" in message


def test_semicolon_separated_transfer_gets_a_delimiter_hint(tmp_path, csv_splits):
    message = _error(tmp_path, csv_splits, _semicolons("transfer"))
    assert "transfer.csv: missing feature columns" in message and "looks semicolon-separated" in message


def test_missing_feature_column_suggests_the_close_one(tmp_path, csv_splits):
    message = _error(tmp_path, csv_splits,
                     lambda p: pd.read_csv(p["test"]).rename(columns={"f5": "F5"}).to_csv(p["test"], index=False))
    assert "test.csv: missing feature columns 'f5' ('f5': did you mean 'F5'?)" in message


def test_every_missing_file_is_reported_at_once(tmp_path, csv_splits):
    from distillguard.api import check_data

    csv_splits["transfer"].unlink()
    csv_splits["test"].unlink()
    with pytest.raises(DataError) as info:
        check_data(spec_with(tmp_path, "csv"))
    message = str(info.value)
    assert message.startswith("2 data files not found:")
    assert "transfer.csv ([data].transfer)" in message and "test.csv ([data].test)" in message
