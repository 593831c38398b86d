"""distillguard scan on an sklearn model exported to ONNX and on a predictions file (no shadows: seconds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scan_support import export_onnx, features, fit_forest, recompute, scan_spec, write_predictions

import distillguard


def _member_loss(clf, paths, ids: list[str]) -> np.ndarray:
    """−(cross-entropy) of the forest on the audited records, computed with scikit-learn alone."""
    frames = {role: pd.read_csv(paths[role]) for role in ("members", "nonmembers")}
    out = []
    for example_id in ids:
        role, row = example_id.split(":")
        record = frames[role].iloc[int(row)]
        p = clf.predict_proba(record.drop("y").to_numpy(np.float32)[None])[0]
        out.append(np.log(max(p[list(clf.classes_).index(record["y"])], 1e-30)))
    return np.asarray(out)


@pytest.fixture
def forest(csv_splits):
    return fit_forest(csv_splits)


def _check_report_against_scores(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    scores = pd.read_parquet(run_dir / "audit" / "scores.parquet")
    assert set(scores.target) == {"model"} and {a["target"] for a in report["attacks"]} == {"model"}
    for attack in report["attacks"]:
        auc, tpr = recompute(scores, attack)
        assert attack["auc"] == pytest.approx(auc, abs=1e-6), attack["attack"]
        assert attack["tpr_at_fpr"]["0.01"] == pytest.approx(tpr, abs=1e-6), attack["attack"]
    return report, scores


@pytest.mark.parametrize("zipmap", [False, True])
def test_scan_of_an_onnx_forest_matches_sklearn(tmp_path, csv_splits, forest, zipmap):
    model = export_onnx(forest, tmp_path / "forest.onnx", 12, zipmap=zipmap)
    result = distillguard.scan(scan_spec(tmp_path, f'model = "{model.name}"'), run_dir=tmp_path / "run")
    report, scores = _check_report_against_scores(result.run_dir)
    test = pd.read_csv(csv_splits["test"])
    accuracy = float(np.mean(forest.predict(features(csv_splits["test"])) == test["y"]))
    # within 3 records: a 30-tree forest ties classes on some rows, and float32 ONNX sums break them differently
    assert report["utility"]["model"]["test_accuracy"] == pytest.approx(accuracy, abs=3 / len(test))
    loss = scores[scores.attack == "loss"]
    independent = _member_loss(forest, csv_splits, loss.example_id.tolist())
    np.testing.assert_allclose(loss.score.to_numpy(), independent, atol=1e-4)
    row = next(a for a in report["attacks"] if a["attack"] == "loss")
    assert row["auc"] > 0.75  # the forest memorizes its members
    assert report["scan"]["attacks_not_run"] == ["lira_online", "strongest"]
    assert {a["attack"]: a.get("queries_per_record") for a in report["attacks"] if a.get("queries_per_record")} == {
        "label_gap": 1, "label_noise": 17}  # the label-only attacks query the model itself
    # without a recipe: offline LiRA and RMIA on 8 reference models trained on half the test split
    references = report["reference_models"]
    assert references["count"] == 8 and references["attacks"] == ["lira_offline", "rmia"]
    assert "150 test records" in references["trained_on"] and "150 test records" in references["population"]
    by = {a["attack"]: a for a in report["attacks"]}
    assert by["lira_offline"]["auc"] > 0.6 and by["rmia"]["auc"] > 0.6
    # calibrated on out-models, RMIA names far more members at 1 % FPR than the loss threshold (26 % vs 5.5 % here)
    assert by["rmia"]["tpr_at_fpr"]["0.01"] > 2 * by["loss"]["tpr_at_fpr"]["0.01"]
    assert report["gate"]["attack"] == "rmia"  # the gate reads the strongest attack that ran
    outputs = np.load(result.run_dir / "audit" / "shadow_outputs.npz")
    assert not outputs["shadow_membership"].any()  # no reference model saw an audited record
    assert "never a safer model" in report["scan"]["note"]
    assert report["gate"]["target"] == "model" and "accuracy_gap" not in json.dumps(report["gate"]["checks"])
    html = (result.run_dir / "report.html").read_text()
    assert "scanned model" in html and "never a safer model" in html


def test_scan_of_a_predictions_file(tmp_path, csv_splits, forest):
    predictions = write_predictions(forest, csv_splits, tmp_path / "preds.csv")
    result = distillguard.scan(scan_spec(tmp_path, f'predictions = "{predictions.name}"'), run_dir=tmp_path / "run")
    report, scores = _check_report_against_scores(result.run_dir)
    assert report["attacks"][0]["n_members"] == 200 and report["attacks"][0]["n_nonmembers"] == 200
    loss = scores[scores.attack == "loss"]
    np.testing.assert_allclose(loss.score.to_numpy(), _member_loss(forest, csv_splits, loss.example_id.tolist()),
                               atol=1e-9)
    assert report["utility"]["model"]["test_accuracy"] is None
    # no test-set outputs in the file, so no RMIA population: offline LiRA on the reference models only
    assert report["scan"]["attacks_not_run"] == ["lira_online", "rmia", "strongest", "label_gap", "label_noise"]
    assert report["reference_models"]["attacks"] == ["lira_offline"]


def test_logits_and_probabilities_give_the_same_scores(tmp_path, csv_splits, forest):
    """A row of logits is read up to a constant: log-probabilities plus any per-row shift score the same."""
    probs = write_predictions(forest, csv_splits, tmp_path / "probs.parquet")
    frame = pd.read_parquet(probs)
    classes = [str(c) for c in forest.classes_]
    shift = np.random.default_rng(0).normal(size=(len(frame), 1)) * 5 + 3
    frame[classes] = np.log(np.maximum(frame[classes].to_numpy(), 1e-30)) + shift
    frame.to_parquet(tmp_path / "logits.parquet")
    runs = {}
    for name in ("probs", "logits"):
        spec = scan_spec(tmp_path, f'predictions = "{name}.parquet"', name=name)
        runs[name] = pd.read_parquet(distillguard.scan(spec, run_dir=tmp_path / name).run_dir / "audit" / "scores.parquet")
    for attack in ("loss", "confidence", "entropy", "modified_entropy"):
        a, b = (runs[n][runs[n].attack == attack].score.to_numpy() for n in ("probs", "logits"))
        np.testing.assert_allclose(a, b, atol=1e-6, err_msg=attack)
