"""[data] input_shape: flat feature files reshaped into images for a CNN."""

from __future__ import annotations

import pytest

from conftest import csv_spec_text, write_csv_splits
from distillguard.config import load_spec
from distillguard.data import load_members
from distillguard.errors import ConfigError


def test_input_shape_reshapes_the_schema_and_a_mismatch_names_both_sizes(tmp_path) -> None:
    write_csv_splits(tmp_path)  # 12 feature columns
    (tmp_path / "ok.toml").write_text(csv_spec_text(extra="").replace('label = "y"', 'label = "y"\ninput_shape = [1, 3, 4]'))
    schema, members = load_members(load_spec(tmp_path / "ok.toml").data, seed=0)
    assert schema.input_shape == (1, 3, 4) and members.X.shape[1] == 12
    (tmp_path / "bad.toml").write_text(csv_spec_text(extra="").replace('label = "y"', 'label = "y"\ninput_shape = [1, 3, 3]'))
    with pytest.raises(ConfigError, match=r"input_shape = \[1, 3, 3\] holds 9 values.*12 feature columns"):
        load_members(load_spec(tmp_path / "bad.toml").data, seed=0)


def test_input_shape_is_refused_with_a_builtin(tmp_path) -> None:
    (tmp_path / "s.toml").write_text('[data]\nbuiltin = "digits"\ninput_shape = [1, 8, 8]\n')
    with pytest.raises(ConfigError, match=r"\[data\].*input_shape is for files"):
        load_spec(tmp_path / "s.toml")
