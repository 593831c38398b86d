"""distillguard scan on a past run's teacher folder gives that run's teacher audit, number for number."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import E2E_SPEC, run_cli
from scan_support import recompute


def test_scanning_a_runs_teacher_reproduces_its_audit(finished_run, tmp_path):
    # the run's teacher recipe as RUN/spec.toml resolved it: the defended default smooths the teacher's labels,
    # and a scan (which trains no student) does not fill that in by itself
    assert "label_smoothing = 0.3" in (finished_run / "spec.toml").read_text()
    spec = (E2E_SPEC.replace('name = "tiny"', 'name = "rescan"').replace("[teacher]\n", "[teacher]\nlabel_smoothing = 0.3\n")
            + f'[scan]\nmodel = "{finished_run / "teacher"}"\n')
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


def test_scanning_a_deploy_bundle_attacks_the_runs_student(finished_run, tmp_path):
    """The bundle is the student: without a recipe the threshold attacks score it as the run's audit did."""
    spec = E2E_SPEC.replace('name = "tiny"', 'name = "bundle"').split("[teacher]")[0]
    spec += f'[audit]\nbootstrap = 20\n[scan]\nmodel = "{finished_run / "deploy"}"\n'
    (tmp_path / "scan.toml").write_text(spec)
    result = run_cli("scan", "scan.toml", "--run-dir", "scan", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not run: lira_online, strongest" in result.stdout  # offline LiRA and RMIA ran on reference models
    scanned = json.loads((tmp_path / "scan" / "report.json").read_text())
    original = json.loads((finished_run / "report.json").read_text())
    assert scanned["scan"]["source"] == "distillguard student folder" and scanned["shadows"] is None
    assert scanned["utility"]["model"]["test_accuracy"] == original["utility"]["student"]["test_accuracy"]
    # every member is audited (a bundle has no split.json): the loss attack, recomputed with the bundle's own API
    from sklearn.metrics import roc_auc_score

    import distillguard
    from distillguard.config import load_spec
    from distillguard.data import load_members, load_role

    data = load_spec(tmp_path / "scan.toml")
    schema, members = load_members(data.data, seed=0)
    splits = {"members": members, "nonmembers": load_role(data.data, "nonmembers", schema=schema, seed=0)}
    loss = pd.read_parquet(tmp_path / "scan" / "audit" / "scores.parquet").query("attack == 'loss'")
    assert loss.is_member.sum() == len(members)
    rows = [(splits[i.split(":")[0]].X[int(i.split(":")[1])], splits[i.split(":")[0]].y[int(i.split(":")[1])])
            for i in loss.example_id]
    probs = distillguard.load_bundle(finished_run / "deploy").predict_proba(np.stack([x for x, _ in rows]))
    own = np.log(probs[np.arange(len(rows)), [y for _, y in rows]])
    np.testing.assert_allclose(loss.score.to_numpy(), own, atol=1e-5)
    auc = next(a["auc"] for a in scanned["attacks"] if a["attack"] == "loss")
    assert auc == pytest.approx(roc_auc_score(loss.is_member, own), abs=1e-4)
    assert scanned["gate"]["verdict"] != "pass"  # no canaries: no positive control, never a pass
    gate = run_cli("gate", "scan", cwd=tmp_path)
    assert gate.returncode in (1, 3) and "model" in gate.stdout

