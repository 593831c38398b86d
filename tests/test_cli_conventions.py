"""CLI conventions: --version, flags shown as flags, no blank line before error:, default names,
a resolved spec with only the tables that apply, and progress bars that stop their clocks."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib

from rich.console import Console
from typer.testing import CliRunner

import distillguard
from distillguard import progress
from distillguard.cli import INTERNAL_ERROR_EXIT, app
from distillguard.config import load_spec
from distillguard.config.loading import demo_spec


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"distillguard {distillguard.__version__}"


def test_boolean_flags_are_shown_as_flags():
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "120"})
    assert "--destroy-teacher" in result.output and "<bool>" not in result.output
    assert "<path>" in result.output  # options that take a value still show it


def test_error_line_has_no_blank_line_before_it(tmp_path):
    result = subprocess.run([sys.executable, "-m", "distillguard", "gate", str(tmp_path / "missing")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_default_run_name_is_the_spec_files_name(tmp_path):
    path = tmp_path / "breast-cancer.toml"
    path.write_text('[data]\nbuiltin = "digits"\n')
    assert load_spec(path).run.name == "breast-cancer"
    path.write_text('[run]\nseed = 3\n[data]\nbuiltin = "digits"\n')
    assert load_spec(path).run.name == "breast-cancer" and load_spec(path).run.seed == 3
    path.write_text('[run]\nname = "mine"\n')
    assert load_spec(path).run.name == "mine"


def test_resolved_spec_holds_only_the_tables_that_apply(tmp_path, csv_splits):
    from conftest import csv_spec_text

    (tmp_path / "spec.toml").write_text(csv_spec_text())
    spec = load_spec(tmp_path / "spec.toml")
    resolved = tomllib.loads(spec.to_toml())
    assert "synth" not in resolved["data"] and "pii_corpus" not in resolved["data"]
    (tmp_path / "resolved.toml").write_text(spec.to_toml())
    assert load_spec(tmp_path / "resolved.toml") == spec  # the same spec, so the same fingerprints
    demo = tomllib.loads(demo_spec().to_toml())
    assert "synth" in demo["data"] and "pii_corpus" not in demo["data"]  # the demo's data is purchase-synth


def test_progress_bar_gets_its_total_and_its_clock_stops():
    console = Console(file=io.StringIO(), force_terminal=False, width=100)
    with progress.enabled(console):
        with progress.task("label", None) as advance:
            advance(3000)
        bar = progress._progress.tasks[0]
        assert bar.total == 3000 and bar.finished and bar.stop_time is not None
        stopped = bar.elapsed
        with progress.task("distill", 10) as advance:
            advance(10)
        assert bar.elapsed == stopped  # the label bar's clock does not run on through later stages


def test_no_bar_draws_nothing():
    console = Console(file=io.StringIO(), force_terminal=False, width=100)
    with progress.enabled(console):
        pass
    assert console.file.getvalue() == ""


def test_an_internal_error_has_its_own_exit_code_never_a_verdicts(tmp_path, monkeypatch):
    """A bug exits 4 with its traceback, so a script reading 1 as "the gate failed" is never misled."""
    from distillguard import api

    def broken(*args, **kwargs):
        raise KeyError("transfer_set")

    monkeypatch.setattr(api, "run", broken)
    result = CliRunner().invoke(app, ["run", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == INTERNAL_ERROR_EXIT == 4
    assert "KeyError: 'transfer_set'" in result.output and "internal error (exit 4)" in result.output
    monkeypatch.undo()
    user_error = CliRunner().invoke(app, ["run", str(tmp_path / "missing.toml")])  # bad input stays exit 2
    assert user_error.exit_code == 2 and "internal error" not in user_error.output
