"""Bad input to distillguard scan: one `error:` line naming the file and what was expected, exit 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from scan_support import export_onnx, fit_forest, scan_spec, write_predictions

from distillguard.cli import app
from distillguard.config import load_spec
from distillguard.data.predictions import as_logits
from distillguard.errors import ConfigError, DataError


def _scan_fails(spec, *expected: str) -> str:
    result = CliRunner().invoke(app, ["scan", str(spec), "--run-dir", str(spec.parent / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for text in expected:
        assert text in lines[0], lines[0]
    assert not (spec.parent / "run" / "report.json").exists()
    return lines[0]


def test_a_folder_that_is_not_a_model(tmp_path, csv_splits):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    _scan_fails(scan_spec(tmp_path, 'model = "notes"'), "notes", "not a model", ".onnx")


def test_a_hugging_face_folder_it_cannot_load(tmp_path, csv_splits):
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    _scan_fails(scan_spec(tmp_path, 'model = "lm"'), "lm", "not a model", "GPT2LMHeadModel")


def test_an_onnx_model_of_another_width(tmp_path, csv_splits):
    model = export_onnx(fit_forest(csv_splits, drop_feature=True), tmp_path / "narrow.onnx", 11)
    _scan_fails(scan_spec(tmp_path, f'model = "{model.name}"'), "narrow.onnx", "takes 11 features", "have 12")


def test_probabilities_that_do_not_sum_to_one(tmp_path, csv_splits):
    path = write_predictions(fit_forest(csv_splits), csv_splits, tmp_path / "preds.csv")
    frame = pd.read_csv(path)
    frame.loc[7, ["high", "low", "mid"]] = [0.5, 0.4, 0.3]
    frame.to_csv(path, index=False)
    _scan_fails(scan_spec(tmp_path, 'predictions = "preds.csv"'), "preds.csv", "members:7", "sums to 1.2")


def test_a_missing_member_column(tmp_path, csv_splits):
    path = write_predictions(fit_forest(csv_splits), csv_splits, tmp_path / "preds.csv")
    pd.read_csv(path).drop(columns="is_member").to_csv(path, index=False)
    _scan_fails(scan_spec(tmp_path, 'predictions = "preds.csv"'), "preds.csv", "missing column 'is_member'")


def test_a_member_flag_that_contradicts_the_id(tmp_path, csv_splits):
    path = write_predictions(fit_forest(csv_splits), csv_splits, tmp_path / "preds.csv")
    frame = pd.read_csv(path)
    frame.loc[3, "is_member"] = False
    frame.to_csv(path, index=False)
    _scan_fails(scan_spec(tmp_path, 'predictions = "preds.csv"'), "preds.csv", "members:3", "members file")


def test_an_id_beyond_the_data(tmp_path, csv_splits):
    path = write_predictions(fit_forest(csv_splits), csv_splits, tmp_path / "preds.csv")
    frame = pd.read_csv(path)
    frame.loc[0, "example_id"] = "nonmembers:999"
    frame.loc[0, "is_member"] = False
    frame.to_csv(path, index=False)
    _scan_fails(scan_spec(tmp_path, 'predictions = "preds.csv"'), "nonmembers:999", "has no row 999")


@pytest.mark.parametrize(("scan", "extra", "expected"), [
    ('model = "m.onnx"\npredictions = "p.csv"\n', "", "exactly one of model"),
    ("", "", "exactly one of model"),
    ('model = "m.onnx"\n', "shadows = 4\n", "shadows replay the model's training recipe"),
    ('model = "m.onnx"\n', "[gate]\ntarget = \"student\"\n", '"model"'),
    ('predictions = "p.csv"\n', "shadows = 4\n[teacher]\nepochs = 3\n", "predictions file has only outputs"),
])
def test_spec_errors(tmp_path, scan, extra, expected):
    """(``extra`` continues the [audit] table scan_spec opens.)"""
    spec = scan_spec(tmp_path, scan, extra=extra)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        load_spec(spec)


def test_run_refuses_a_scan_spec_and_scan_needs_one(tmp_path, csv_splits):
    spec = scan_spec(tmp_path, 'model = "m.onnx"\n')
    result = CliRunner().invoke(app, ["run", str(spec), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "distillguard scan" in result.output
    plain = tmp_path / "plain.toml"
    plain.write_text(spec.read_text().split("[scan]")[0])
    result = CliRunner().invoke(app, ["scan", str(plain), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "needs a [scan] table" in result.output


def test_scan_defaults_follow_the_recipe(tmp_path):
    without = load_spec(scan_spec(tmp_path, 'model = "m.onnx"\n', name="a"))
    assert (without.scan.recipe, without.audit.shadows, without.gate.target) == (False, 0, "model")
    assert without.gate.attack == "rmia" and without.gate.max_accuracy_gap is None
    assert without.audit.reference_models == 8 and without.audit.attacks[-4:] == ["lira_offline", "rmia", "label_gap", "label_noise"]
    resolved = tmp_path / "without.toml"
    resolved.write_text(without.to_toml())
    assert load_spec(resolved) == without
    none = load_spec(scan_spec(tmp_path, 'model = "m.onnx"\n', extra="reference_models = 0\n", name="c"))
    assert none.gate.attack == "loss" and "rmia" not in none.audit.attacks
    with pytest.raises(ConfigError, match="reference_models = 8 calibrates a scan without a recipe; with shadows = 4"):
        load_spec(scan_spec(tmp_path, 'model = "m.onnx"\n', extra="shadows = 4\nreference_models = 8\n", name="d"))
    recipe = load_spec(scan_spec(tmp_path, 'model = "m.onnx"\n', extra="[teacher]\nepochs = 3\n", name="b"))
    assert (recipe.scan.recipe, recipe.audit.shadows, recipe.gate.attack) == (True, 16, "strongest")
    again = tmp_path / "resolved.toml"
    again.write_text(recipe.to_toml())
    assert load_spec(again) == recipe  # the recorded spec means the same scan


def test_as_logits():
    p = [[0.2, 0.8], [0.5, 0.5]]
    assert as_logits(p, source="f").ravel().tolist() == pytest.approx([-1.6094379, -0.2231436, -0.6931472, -0.6931472])
    assert as_logits([[2.0, -1.0]], source="f").tolist() == [[2.0, -1.0]]  # outside [0, 1]: logits as they are
    with pytest.raises(DataError, match="f: outputs in \\[0, 1\\].*row b sums to 0.9"):
        as_logits([[0.2, 0.8], [0.4, 0.5]], source="f", row_ids=["a", "b"])


def test_the_hook_for_hugging_face_sequence_classifiers(tmp_path, monkeypatch):
    """On data that is not text, such a folder is a one-line error; a registered loader comes first."""
    import numpy as np

    from distillguard.data.types import Schema
    from distillguard.models import external

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    schema = Schema(["f0", "f1"], ["a", "b"], (2,))
    monkeypatch.setattr(external, "_FOLDER_LOADERS", [])
    with pytest.raises(DataError, match=r"hf: \[scan\].model is a text classifier; \[data\] must be labelled text"):
        external.load_external_model(folder, schema)

    def load(path, schema):
        return external._Loaded(f"HF classifier {path.name}", lambda X: X[:, :2].astype(np.float64) * 2)

    external.register_folder_loader(
        lambda path, config: any(a.endswith("ForSequenceClassification") for a in config.get("architectures", [])), load)
    model = external.load_external_model(folder, schema)
    assert model.description == "HF classifier hf"
    assert model.logits(np.array([[1.0, 2.0]])).tolist() == [[2.0, 4.0]]
