"""PATE in the pipeline: ε in the report, utility with the defaults, the audit's replay, spec errors."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import distillguard
from distillguard.config import PATE_DEFAULTS, load_spec, parse_spec
from distillguard.data import load_role
from distillguard.errors import ConfigError
from distillguard.models.artifact import load_classifier
from distillguard.models.classifiers import Ensemble
from distillguard.runs import read_json
from distillguard.privacy.pate_rdp import pate_epsilon
from distillguard.privacy.pate_record import recompute_pate_epsilon

from tests.conftest import csv_spec_text


def _write_digits_csvs(folder: Path) -> None:
    """All of sklearn's 1,797 digits as four user CSV files (the label column named y)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(X))
    frame = pd.DataFrame(X[order], columns=[f"px{i}" for i in range(64)])
    frame["y"] = y[order]
    bounds = {"members": (0, 700), "nonmembers": (700, 1000), "transfer": (1000, 1500), "test": (1500, 1797)}
    for role, (a, b) in bounds.items():
        part = frame.iloc[a:b]
        (part.drop(columns=["y"]) if role == "transfer" else part).to_csv(folder / f"{role}.csv", index=False)


def _accuracy(folder: Path, spec, role: str = "test") -> float:
    clf, _ = load_classifier(folder)
    test = load_role(spec.data, role, schema=clf.schema, seed=spec.run.seed)
    return float((clf.logits(test.X).argmax(1) == test.y).mean())


def test_pate_run_on_csv_splits_with_the_defaults(tmp_path):
    _write_digits_csvs(tmp_path)
    # PATE's own defaults (teachers, sigma, no threshold); smaller networks than the default
    # recipe so the test takes seconds, the same for the undefended teacher.
    recipe = "[teacher]\nhidden = [128]\n[student]\nhidden = [128]\nepochs = 40\n[audit]\nshadows = 0\nbootstrap = 0\n"
    (tmp_path / "pate.toml").write_text(csv_spec_text("pate", '[privacy]\nmechanism = "pate"\n' + recipe))
    (tmp_path / "plain.toml").write_text(csv_spec_text("plain", recipe))
    result = distillguard.run(tmp_path / "pate.toml", run_dir=tmp_path / "run")
    report, run = result.report, tmp_path / "run"

    privacy = report["privacy"]
    assert privacy["mechanism"] == "pate" and privacy["analysis"] == "data-independent"
    assert privacy["teachers"] == PATE_DEFAULTS["teachers"] and privacy["sigma"] == PATE_DEFAULTS["sigma"]
    assert privacy["threshold"] is None and privacy["data_dependent"] is None
    assert privacy["queries"] == privacy["answered"] == 500  # plain GNMax answers every transfer row
    assert privacy["delta"] == pytest.approx(min(1 / (10 * 700), 1e-5))
    assert math.isfinite(privacy["epsilon"]) and privacy["epsilon"] > 0
    # The recorded ε follows from the recorded noise, counts and δ alone.
    again = pate_epsilon(answered=privacy["answered"], queries=privacy["queries"], sigma=privacy["sigma"],
                         sigma1=None, delta=privacy["delta"])["epsilon"]
    assert again == pytest.approx(privacy["epsilon"], rel=1e-12)
    assert read_json(run / "softlabels" / "meta.json")["privacy"] == privacy
    assert read_json(run / "manifest.json")["stages"]["label"]["privacy"] == privacy

    # The teacher folder is one owner-only safetensors ensemble of disjoint-partition teachers.
    assert stat.S_IMODE((run / "teacher").stat().st_mode) == 0o700
    ensemble, config = load_classifier(run / "teacher")
    assert isinstance(ensemble.model, Ensemble) and len(ensemble.model.members) == PATE_DEFAULTS["teachers"]
    assert len(read_json(run / "teacher" / "split.json")["train_ids"]) == 700  # every member, in one partition

    # Utility: within 15 points of an undefended teacher trained with the same recipe on the same members.
    undefended = distillguard.train_teacher(tmp_path / "plain.toml", run_dir=tmp_path / "plain")
    spec = load_spec(tmp_path / "pate.toml")
    student, teacher = _accuracy(run / "student", spec), _accuracy(undefended, spec)
    assert report["utility"]["student"]["test_accuracy"] == pytest.approx(student)
    assert teacher > 0.9 and student > teacher - 0.15, (student, teacher)

    # The student stage read the released labels and the public transfer file, nothing private.
    distill_inputs = read_json(run / "manifest.json")["stages"]["distill"]["inputs"]
    assert set(distill_inputs) == {"data.transfer", "softlabels/meta.json", "softlabels/part-00000.parquet",
                                   "softlabels/queries.parquet"}
    meta_text = (run / "softlabels" / "meta.json").read_text()
    assert str(tmp_path / "members.csv") not in meta_text and str(tmp_path / "nonmembers.csv") not in meta_text


def test_confident_gnmax_run_replays_pate_in_the_shadows(tmp_path):
    (tmp_path / "spec.toml").write_text(
        '[run]\nname = "cpate"\n[data]\nbuiltin = "purchase-synth"\n'
        "[data.sizes]\nmembers = 200\nnonmembers = 200\ntransfer = 300\ntest = 200\n"
        "[data.synth]\nfeatures = 40\nclasses = 4\nclusters = 2\n"
        "[teacher]\nhidden = [16]\nepochs = 5\n[student]\nhidden = [16]\nepochs = 8\n"
        '[privacy]\nmechanism = "pate"\nteachers = 10\nsigma = 2.0\nthreshold = 7.0\nsigma_threshold = 3.0\n'
        "data_dependent = true\n"
        "[audit]\nshadows = 4\ncanaries = 8\nbootstrap = 0\n"
    )
    report = distillguard.run(tmp_path / "spec.toml", run_dir=tmp_path / "run").report
    privacy = report["privacy"]
    assert privacy["aggregator"] == "confident-gnmax" and privacy["threshold"] == 7.0
    assert 0 < privacy["answered"] < privacy["queries"] == 300
    assert recompute_pate_epsilon(privacy) == pytest.approx(privacy["epsilon"], rel=1e-12)
    # The threshold test is paid on every query: more than the answers alone would cost.
    answers_only = pate_epsilon(answered=privacy["answered"], queries=privacy["answered"], sigma=2.0, sigma1=None,
                                delta=privacy["delta"])["epsilon"]
    assert privacy["epsilon"] > answers_only
    dependent = privacy["data_dependent"]
    assert "not itself differentially private" in dependent["note"] and dependent["epsilon"] <= privacy["epsilon"]
    student_cfg = read_json(tmp_path / "run" / "student" / "config.json")
    assert student_cfg["distill"] == {"loss": "cross-entropy on PATE labels"}
    assert read_json(tmp_path / "run" / "manifest.json")["stages"]["distill"]["n_transfer"] == privacy["answered"]
    assert report["shadows"]["replay"].startswith("PATE")
    lower = report["empirical_epsilon"]["epsilon_lower"]
    assert lower <= privacy["epsilon"] and not any("EXCEEDS" in w for w in report["warnings"])
    assert {(a["target"], a["population"]) for a in report["attacks"] if a["attack"] == "lira_online"} == {
        ("teacher", "all"), ("teacher", "canaries"), ("student", "all"), ("student", "canaries")}
    html = (tmp_path / "run" / "report.html").read_text()
    assert "pate" in html and f"{privacy['epsilon']:.3f}" in html


@pytest.mark.parametrize("privacy, message", [
    ('mechanism = "dp-sgd"\nepsilon = 4.0\nteachers = 10', 'teachers is a PATE setting; it needs mechanism = "pate"'),
    ('mechanism = "none"\nsigma = 2.0', 'sigma is a PATE setting'),
    ('mechanism = "pate"\nepsilon = 4.0', 'epsilon is a DP-SGD setting; it needs mechanism = "dp-sgd"'),
    ('mechanism = "pate"\nthreshold = 5.0', "Confident-GNMax needs both threshold and sigma_threshold"),
    ('mechanism = "pate"\nsigma = 0.0', r"\[privacy\]\.sigma: Input should be greater than 0"),
    ('mechanism = "pate"\nteachers = 0', r"\[privacy\]\.teachers: Input should be greater than or equal to 1"),
    ('mechanism = "pate"\nteachers = 5\nthreshold = 6.0\nsigma_threshold = 2.0', "threshold = 6.0 exceeds teachers = 5"),
    ('mechanism = "pate"\ndata_dependent = "maybe"', r"\[privacy\]\.data_dependent"),
])
def test_pate_spec_errors_name_the_field(tmp_path, privacy, message):
    import tomllib

    raw = tomllib.loads(f"[privacy]\n{privacy}\n")
    with pytest.raises(ConfigError, match=message):
        parse_spec(raw, base_dir=tmp_path, source="spec.toml")


def test_pate_defaults_fill_in_only_for_pate(tmp_path):
    spec = parse_spec({"privacy": {"mechanism": "pate"}}, base_dir=tmp_path)
    assert (spec.privacy.teachers, spec.privacy.sigma, spec.privacy.data_dependent) == (20, 4.0, False)
    assert 'teachers = 20' in spec.to_toml()
    plain = parse_spec({}, base_dir=tmp_path)
    assert plain.privacy.teachers is None and "teachers" not in plain.to_toml()
    with pytest.raises(ConfigError, match=r"\[teacher\]\.path cannot be used with .*pate"):
        parse_spec({"privacy": {"mechanism": "pate"}, "teacher": {"path": "t"}}, base_dir=tmp_path)


def test_more_teachers_than_members_is_a_clear_cli_error(tmp_path):
    from tests.conftest import run_cli, write_csv_splits

    write_csv_splits(tmp_path)
    (tmp_path / "spec.toml").write_text(csv_spec_text(extra='[privacy]\nmechanism = "pate"\nteachers = 500\n'
                                                          "[audit]\nshadows = 0\n"))
    done = run_cli("teacher", "spec.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert "error: [privacy].teachers = 500: must be between 1 and the number of members (200)" in done.stderr
