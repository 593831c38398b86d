"""No user file is ever unpickled: the source never calls pickle or an unsafe torch.load."""

from __future__ import annotations

import re
from pathlib import Path

import distillguard

SOURCE = Path(distillguard.__file__).parent
UNSAFE = [
    (re.compile(r"\bpickle\.loads?\(|\bimport pickle\b|\bcloudpickle\b|\bjoblib\.load\("), "pickle"),
    (re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"), "torch.load without weights_only=True"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load with allow_pickle=True"),
]


def test_no_unsafe_deserialisation_in_the_package():
    files = sorted(SOURCE.rglob("*.py"))
    assert len(files) > 30
    hits = [f"{path.relative_to(SOURCE)}:{n}: {why}" for path in files
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            for pattern, why in UNSAFE if pattern.search(line)]
    assert hits == []


def test_npz_adapter_refuses_pickled_arrays(tmp_path):
    import numpy as np
    import pytest

    from distillguard.data.tables import read_table
    from distillguard.errors import DataError

    np.savez(tmp_path / "m.npz", X=np.array([[{"a": 1}]], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match="no pickled objects"):
        read_table(tmp_path / "m.npz", fmt="npz", label="y", role="members", labeled=True)
