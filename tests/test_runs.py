"""Run folder mechanics: atomic writes, staged folders, stage skipping."""

import json

import pytest

from distillguard.errors import ArtifactError
from distillguard.runs import RunDir, atomic_write_json, staged_dir
from distillguard.stages.common import execute_stage


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_staged_dir_is_all_or_nothing(tmp_path):
    final = tmp_path / "stage"
    with staged_dir(final) as folder:
        (folder / "one").write_text("1")
    assert (final / "one").read_text() == "1"
    with pytest.raises(RuntimeError):
        with staged_dir(final) as folder:
            (folder / "two").write_text("2")
            raise RuntimeError("crash mid-stage")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]
    assert sorted(p.name for p in final.iterdir()) == ["one"]  # the old outputs survive intact


def _stage(run, calls, *, params, inputs):
    def build(folder):
        calls.append(1)
        (folder / "out.txt").write_text(json.dumps(params))
    return execute_stage(run, "demo", params=params, inputs=inputs, output="demo", build=build)


def test_skip_when_params_and_inputs_unchanged(tmp_path):
    run, calls = RunDir(tmp_path), []
    assert _stage(run, calls, params={"a": 1}, inputs={"x": "h1"}) is True
    assert _stage(run, calls, params={"a": 1}, inputs={"x": "h1"}) is False
    assert len(calls) == 1
    record = run.stage("demo")
    assert record["status"] == "complete" and "demo/out.txt" in record["outputs"]
    assert record["params"] == {"a": 1} and record["inputs"] == {"x": "h1"}


def test_rerun_when_params_inputs_or_outputs_change(tmp_path):
    run, calls = RunDir(tmp_path), []
    _stage(run, calls, params={"a": 1}, inputs={"x": "h1"})
    assert _stage(run, calls, params={"a": 2}, inputs={"x": "h1"}) is True
    assert _stage(run, calls, params={"a": 2}, inputs={"x": "h2"}) is True
    (tmp_path / "demo" / "out.txt").unlink()  # a missing output is recomputed
    assert _stage(run, calls, params={"a": 2}, inputs={"x": "h2"}) is True
    assert len(calls) == 4


def test_tampered_output_is_an_error_not_a_rerun(tmp_path):
    run, calls = RunDir(tmp_path), []
    _stage(run, calls, params={"a": 1}, inputs={"x": "h1"})
    (tmp_path / "demo" / "out.txt").write_text("tampered")
    with pytest.raises(ArtifactError, match=r"out\.txt: sha256 does not match the manifest"):
        _stage(run, calls, params={"a": 1}, inputs={"x": "h1"})
    assert len(calls) == 1


def test_failed_stage_is_not_recorded(tmp_path):
    run = RunDir(tmp_path)

    def build(folder):
        (folder / "half").write_text("x")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        execute_stage(run, "demo", params={}, inputs={}, output="demo", build=build)
    assert run.stage("demo") is None
    assert not (tmp_path / "demo").exists()
