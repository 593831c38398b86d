"""distillguard scan on a past run's teacher folder gives that run's teacher audit, number for number."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import E2E_SPEC, run_cli
from scan_support import recompute


def test_scanning_a_runs_teacher_reproduces_its_audit(finished_run, tmp_path):
    spec = E2E_SPEC.replace('name = "tiny"', 'name = "rescan"') + f'[scan]\nmodel = "{finished_run / "teacher"}"\n'
    (tmp_path / "scan.toml").write_text(spec)
    result = run_cli("scan", "scan.toml", "--run-dir", "scan", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scanned = json.loads((tmp_path / "scan" / "report.json").read_text())
    original = json.loads((finished_run / "report.json").read_text())
    assert scanned["scan"]["recipe"] is True and scanned["shadows"]["count"] == 8
    assert scanned["scan"]["members"].startswith("the members the model's split.json")
    teacher = {(a["attack"], a["population"]): a for a in original["attacks"] if a["target"] == "teacher"}
    model = {(a["attack"], a["population"]): a for a in scanned["attacks"]}
    assert set(model) == set(teacher) and ("strongest", "canaries") in model  # LiRA, RMIA and canaries ran
    for key, row in model.items():
        for field in ("auc", "auc_ci", "tpr_at_fpr", "balanced_accuracy", "n_members", "n_nonmembers"):
            assert row[field] == teacher[key][field], (key, field)
    assert scanned["utility"]["model"] == original["utility"]["teacher"]
    epsilon = next(e for e in original["empirical_epsilon"]["by_target"] if e["target"] == "teacher")
    assert scanned["empirical_epsilon"]["epsilon_lower"] == epsilon["epsilon_lower"]

    scores = pd.read_parquet(tmp_path / "scan" / "audit" / "scores.parquet")
    before = pd.read_parquet(finished_run / "audit" / "scores.parquet")
    before = before[before.target == "teacher"].reset_index(drop=True)
    pd.testing.assert_frame_equal(scores.drop(columns="target"), before.drop(columns="target"))
    for attack in scanned["attacks"]:
        auc, tpr = recompute(scores, attack)
        assert attack["auc"] == pytest.approx(auc, abs=1e-6)
        if attack["tpr_at_fpr"]["0.01"] is not None:
            assert attack["tpr_at_fpr"]["0.01"] == pytest.approx(tpr, abs=1e-6)
