"""The student stage never receives the sensitive data: structurally, and in practice."""

import ast
import inspect

import distillguard.stages.distill as distill_stage
from distillguard.config import load_spec
from distillguard.runs import RunDir
from distillguard.stages.label import run_label_stage
from distillguard.stages.teacher import run_teacher_stage
from distillguard.train.student import train_student


def test_train_student_has_no_argument_for_private_data():
    params = inspect.signature(train_student).parameters
    positional = [p for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in positional] == ["transfer_X", "teacher_logits"]
    assert not any("member" in name for name in params)


def test_distill_stage_imports_no_private_loader():
    tree = ast.parse(inspect.getsource(distill_stage))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert "iter_transfer" in imported
    assert not imported & {"load_members", "load_classifier", "read_table", "load_split"}


def test_distill_runs_with_the_private_files_gone(tmp_path, tiny_csv_spec, csv_splits):
    spec, run = load_spec(tiny_csv_spec), RunDir(tmp_path / "run")
    run.root.mkdir()
    run_teacher_stage(spec, run)
    run_label_stage(spec, run)
    for role in ("members", "nonmembers", "test"):
        csv_splits[role].unlink()
    # Only the soft labels and the transfer file remain; the teacher is gone too.
    for path in (run / "teacher").iterdir():
        path.unlink()
    assert distill_stage.run_distill_stage(spec, run) is True
    inputs = run.stage("distill")["inputs"]
    assert set(inputs) == {"data.transfer"} | {k for k in inputs if k.startswith("softlabels/")}
    assert (run / "student" / "model.safetensors").is_file()


def test_pate_student_trains_with_the_private_files_and_ensemble_gone(tmp_path, csv_splits):
    from tests.conftest import TINY_MODELS, csv_spec_text
    from distillguard.train.student import train_student_on_labels

    assert [p.name for p in inspect.signature(train_student_on_labels).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD] == ["transfer_X", "labels"]
    path = tmp_path / "spec.toml"
    path.write_text(csv_spec_text(extra=TINY_MODELS + '[privacy]\nmechanism = "pate"\nteachers = 5\nsigma = 1.0\n'))
    spec, run = load_spec(path), RunDir(tmp_path / "run")
    run.root.mkdir()
    run_teacher_stage(spec, run)
    run_label_stage(spec, run)
    for role in ("members", "nonmembers", "test"):
        csv_splits[role].unlink()
    for item in (run / "teacher").iterdir():
        item.unlink()
    assert distill_stage.run_distill_stage(spec, run) is True
    assert set(run.stage("distill")["inputs"]) == {"data.transfer", "softlabels/meta.json",
                                                   "softlabels/part-00000.parquet", "softlabels/queries.parquet"}
    assert run.stage("distill")["n_transfer"] == 600  # every transfer row was answered
