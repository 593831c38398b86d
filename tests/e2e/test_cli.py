"""End to end through the CLI: artifacts, report shape, skip on re-run, gate exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file
from sklearn.metrics import roc_auc_score

import distillguard

ATTACKS = ("loss", "confidence", "entropy", "modified_entropy", "lira_online", "lira_offline", "rmia", "strongest")
ARTIFACTS = ["spec.toml", "manifest.json", "teacher", "softlabels", "student", "audit", "deploy", "report.json", "report.html"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    from conftest import run_cli

    return run_cli(*args, cwd=cwd)


def test_run_writes_every_artifact(finished_run):
    for name in ARTIFACTS:
        assert (finished_run / name).exists(), name
    assert (finished_run / "audit" / "scores.parquet").is_file()
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"teacher", "label", "distill", "audit", "export"}
    for record in manifest["stages"].values():
        assert record["status"] == "complete" and record["outputs"] and record["fingerprint"]
    assert manifest["versions"]["torch"].startswith("2.")


def test_report_has_the_contract_shape(finished_run):
    report = json.loads((finished_run / "report.json").read_text())
    assert report["schema_version"] == 1
    assert {"name", "seed", "spec_sha256", "versions"} <= set(report["run"])
    for target in ("teacher", "student"):
        assert 0 <= report["utility"][target]["test_accuracy"] <= 1
    assert report["utility"]["accuracy_gap"] == pytest.approx(
        report["utility"]["teacher"]["test_accuracy"] - report["utility"]["student"]["test_accuracy"])
    assert report["privacy"]["mechanism"] == "none"
    assert report["empirical_epsilon"]["method"] == "one-run audit (Steinke et al. 2023)"
    assert report["empirical_epsilon"]["epsilon_lower"] >= 0
    for a in report["attacks"]:
        assert set(a["tpr_at_fpr"]) == {"0.01", "0.001", "0"}
        assert a["tpr_at_fpr"]["0.001"] is None  # 150 non-members cannot resolve 0.1% FPR
        assert "needs at least 1000 non-members" in a["unresolved"]["0.001"]
        assert a["lowest_fpr"]["fpr"] == pytest.approx(1 / a["n_nonmembers"], abs=1e-6)
        if a["attack"] == "strongest":
            assert a["configuration"]["attack"] in ("lira_online", "lira_offline", "rmia")
        assert a["auc_ci"][0] <= a["auc"] <= a["auc_ci"][1]
    assert isinstance(report["gate"]["passed"], bool) and report["gate"]["checks"]
    html = (finished_run / "report.html").read_text()
    assert "Gate" in html and f"{report['utility']['student']['test_accuracy'] * 100:.1f}%" in html


def test_scores_parquet_reproduces_reported_auc(finished_run):
    scores = pq.read_table(finished_run / "audit" / "scores.parquet").to_pandas()
    assert list(scores.columns) == ["example_id", "target", "attack", "score", "is_member", "is_canary"]
    report = json.loads((finished_run / "report.json").read_text())
    assert {(a["attack"], a["target"], a["population"]) for a in report["attacks"]} == {
        (attack, target, population) for attack in ATTACKS for target in ("teacher", "student")
        for population in ("all", "canaries")} | {  # the label-only attacks query the model: pool only
        (attack, target, "all") for attack in ("label_gap", "label_noise") for target in ("teacher", "student")}
    for a in report["attacks"]:
        rows = scores[(scores.target == a["target"]) & (scores.attack == a["attack"])
                      & (scores.is_canary == (a["population"] == "canaries"))]
        assert len(rows) == a["n_members"] + a["n_nonmembers"]
        assert roc_auc_score(rows.is_member, rows.score) == pytest.approx(a["auc"], abs=1e-6)
        reported = a["tpr_at_fpr"]["0.01"]
        assert (reported is None) == (0.01 * a["n_nonmembers"] < 1)  # null exactly when 1% FPR is unresolvable
        if reported is not None:
            assert _tpr_at_fpr(rows.score.to_numpy(), rows.is_member.to_numpy(), 0.01) == pytest.approx(reported, abs=1e-6)
        lowest = a["lowest_fpr"]
        assert _tpr_at_fpr(rows.score.to_numpy(), rows.is_member.to_numpy(), 1 / a["n_nonmembers"]) == pytest.approx(
            lowest["tpr"], abs=1e-6)


def _tpr_at_fpr(scores, is_member, max_fpr):
    """Brute force: best TPR over thresholds "score >= t" whose FPR <= max_fpr."""
    best = 0.0
    for t in np.unique(scores):
        flagged = scores >= t
        if flagged[~is_member].mean() <= max_fpr:
            best = max(best, flagged[is_member].mean())
    return best


def test_deploy_has_no_teacher_tensor_and_loads(finished_run):
    teacher = load_file(str(finished_run / "teacher" / "model.safetensors"))
    deploy = load_file(str(finished_run / "deploy" / "model.safetensors"))
    for d in deploy.values():
        assert not any(t.shape == d.shape and np.array_equal(t, d) for t in teacher.values())
    assert sorted(p.name for p in (finished_run / "deploy").iterdir()) == ["README.md", "config.json", "manifest.json", "model.safetensors"]
    bundle = distillguard.load_bundle(finished_run / "deploy")
    probs = bundle.predict_proba(np.zeros((3, len(bundle.feature_names_)), dtype=np.float32))
    assert probs.shape == (3, len(bundle.classes_)) and np.allclose(probs.sum(axis=1), 1)


def test_rerun_skips_every_stage(finished_run):
    before = json.loads((finished_run / "manifest.json").read_text())["stages"]
    result = cli("run", "../spec.toml", "--run-dir", ".", cwd=finished_run)
    assert result.returncode == 0, result.stderr
    after = json.loads((finished_run / "manifest.json").read_text())["stages"]
    assert {k: v["finished"] for k, v in after.items()} == {k: v["finished"] for k, v in before.items()}


def test_gate_command_agrees_with_report(finished_run, tmp_path):
    report = json.loads((finished_run / "report.json").read_text())
    result = cli("gate", str(finished_run), cwd=tmp_path)
    assert result.returncode == {"pass": 0, "fail": 1, "inconclusive": 3}[report["gate"]["verdict"]]
    for check in report["gate"]["checks"]:
        assert check["name"] in result.stdout


def test_fifty_members_give_an_inconclusive_verdict_and_exit_3(tmp_path):
    """≈50 members: 45 audited nonmembers cannot resolve TPR at 1 % FPR; neither PASS nor FAIL."""
    from conftest import E2E_SPEC

    (tmp_path / "spec.toml").write_text(E2E_SPEC.replace("members = 150\nnonmembers = 150", "members = 50\nnonmembers = 50"))
    result = cli("run", "spec.toml", "--run-dir", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "gate INCONCLUSIVE" in result.stdout and "45 nonmembers resolve FPR down to 1/45" in result.stdout
    assert "to conclude: at least 500 audited nonmembers" in result.stdout
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["gate"]["verdict"] == "inconclusive" and report["gate"]["passed"] is False
    assert report["gate"]["power"]["n_nonmembers"] == 45 and report["gate"]["power"]["min_fpr"] == 1 / 45
    assert any(w.startswith("pool too small for the gate") for w in report["warnings"])
    assert "INCONCLUSIVE" in (tmp_path / "r" / "report.html").read_text()
    assert "## Release gate: INCONCLUSIVE" in (tmp_path / "r" / "deploy" / "README.md").read_text()
    gate = cli("gate", "r", cwd=tmp_path)
    assert gate.returncode == 3 and "gate INCONCLUSIVE" in gate.stdout and "1/45" in gate.stdout


def test_gate_fails_with_check_value_and_threshold(tmp_path, tiny_builtin_spec):
    strict = tiny_builtin_spec.read_text() + "[gate]\nattack = \"loss\"\ntarget = \"teacher\"\nmax_auc = 0.5\n"
    tiny_builtin_spec.write_text(strict)
    assert cli("run", str(tiny_builtin_spec), "--run-dir", "r", cwd=tmp_path).returncode == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    failing = [c for c in report["gate"]["checks"] if not c["passed"]]
    result = cli("gate", "r", cwd=tmp_path)
    assert result.returncode == 1 and failing
    line = next(l for l in result.stdout.splitlines() if failing[0]["name"] in l)
    assert line.startswith("FAIL") and "max 0.5" in line and f"{failing[0]['value']:.4f}" in line
    spec = str((tmp_path / "r" / "spec.toml"))
    assert "next steps:" in result.stdout and f"distillguard tune {spec} --out runs/tiny-tune" in result.stdout
    html = (tmp_path / "r" / "report.html").read_text()
    assert "distillguard tune RUN/spec.toml --out runs/tiny-tune" in html  # RUN: the run folder, wherever it is


def test_user_csv_defaults_and_bundle_match_report(tmp_path, csv_splits):
    from conftest import csv_spec_text

    (tmp_path / "spec.toml").write_text(csv_spec_text())  # only [run] and [data]
    result = distillguard.run(tmp_path / "spec.toml", run_dir=tmp_path / "run")
    report = result.report
    assert report["utility"]["teacher"]["test_accuracy"] > 0.6  # 3 classes: chance is 0.33
    assert report["utility"]["student"]["test_accuracy"] > 0.55

    bundle = distillguard.load_bundle(tmp_path / "run" / "deploy")
    assert list(bundle.classes_) == ["high", "low", "mid"]
    test = pd.read_csv(csv_splits["test"])
    accuracy = float(np.mean(bundle.predict(test.drop(columns=["y"])) == test["y"].to_numpy()))
    assert accuracy == pytest.approx(report["utility"]["student"]["test_accuracy"], abs=1e-9)

    # The audited population, as scores.parquet names it: "members:ROW" and "nonmembers:ROW".
    scored = pq.read_table(tmp_path / "run" / "audit" / "scores.parquet").to_pandas()
    ids = scored[(scored.attack == "loss") & (scored.target == "student") & ~scored.is_canary].example_id
    rows = {role: [int(i.split(":")[1]) for i in ids if i.startswith(role + ":")] for role in ("members", "nonmembers")}
    trained = set(json.loads((tmp_path / "run" / "teacher" / "split.json").read_text())["train_ids"])
    assert set(rows["members"]) <= trained
    members = pd.read_csv(csv_splits["members"]).iloc[rows["members"]]
    nonmembers = pd.read_csv(csv_splits["nonmembers"]).iloc[rows["nonmembers"]]

    def loss_scores(frame):
        probs = bundle.predict_proba(frame.drop(columns=["y"]).to_numpy())
        index = [list(bundle.classes_).index(v) for v in frame["y"]]
        return np.log(probs[np.arange(len(frame)), index])

    scores = np.concatenate([loss_scores(members), loss_scores(nonmembers)])
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    reported = next(a for a in report["attacks"] if (a["attack"], a["target"], a["population"]) == ("loss", "student", "all"))
    assert roc_auc_score(labels, scores) == pytest.approx(reported["auc"], abs=1e-6)


def test_flipped_byte_in_teacher_weights_exits_2_naming_the_file(finished_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished_run, run)
    weights = run / "teacher" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    for command in ("label", "run"):
        result = cli(command, str(finished_run.parent / "spec.toml"), "--run-dir", str(run), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        line = [l for l in result.stderr.splitlines() if l.strip()][-1]
        assert line.startswith("error: ") and str(weights) in line and "tampered" in line


def test_destroy_teacher_removes_it_and_records_it(tmp_path, tiny_builtin_spec):
    text = tiny_builtin_spec.read_text().replace("shadows = 8\ncanaries = 16",
                                                 "shadows = 4\ncanaries = 0\nattacks = [\"loss\", \"strongest\"]")
    tiny_builtin_spec.write_text(text)
    result = cli("run", str(tiny_builtin_spec), "--run-dir", "r", "--destroy-teacher", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "r"
    assert not (run / "teacher").exists() and not (run / "audit" / "scores.parquet").exists()
    assert not (run / "audit" / "shadow_outputs.npz").exists()  # the shadows' logits and membership
    assert (run / "audit" / "metrics.json").exists()  # aggregate numbers stay
    manifest = json.loads((run / "manifest.json").read_text())
    assert "teacher/model.safetensors" in manifest["teacher_destroyed"]["files"]
    assert "audit/scores.parquet" in manifest["teacher_destroyed"]["files"]
    assert "audit/shadow_outputs.npz" in manifest["teacher_destroyed"]["files"]
    bundle = distillguard.load_bundle(run / "deploy")
    assert bundle.predict_proba(np.zeros((1, len(bundle.feature_names_)))).shape == (1, len(bundle.classes_))


def test_membership_revealing_folders_are_owner_only(finished_run):
    """teacher/ and audit/ (per-record scores) and the checkpoint root: no group or other access."""
    for rel in ("teacher", "audit", ".checkpoints"):
        mode = (finished_run / rel).stat().st_mode & 0o777
        assert mode == 0o700, f"{rel}: {oct(mode)}"
    assert (finished_run / "audit" / "shadow_outputs.npz").stat().st_mode & 0o777 == 0o600
    assert (finished_run / "deploy").stat().st_mode & 0o077 != 0  # the bundle is meant to be shared
