"""The public Python API; the CLI is a thin shell over these functions.

Each stage function takes a spec (path, :class:`~distillguard.config.Spec`, or None for
the built-in demo) and a run folder, and skips itself when its inputs are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillguard.bundle import Bundle, load_bundle
from distillguard.config import ROLES, Spec, load_spec
from distillguard.data import guard_transfer, load_members, load_role
from distillguard.report.build import build_report, write_report
from distillguard.report.gate import evaluate_gate
from distillguard.runs import RunDir, atomic_write_text, library_versions, read_json
from distillguard.stages.dispatch import run_stage
from distillguard.stages.export import destroy_teacher as _destroy_teacher

__all__ = ["Bundle", "RunResult", "audit", "distill", "export", "gate", "label", "load_bundle", "open_run", "report", "run",
           "train_teacher", "tune"]

SpecLike = str | Path | Spec | None


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    report: dict[str, Any]

    @property
    def gate_passed(self) -> bool:
        return bool(self.report["gate"]["passed"])


def open_run(spec: SpecLike, run_dir: str | Path | None = None) -> tuple[Spec, RunDir]:
    """Resolve the spec and run folder (default ``runs/NAME``) and record the resolved spec."""
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    run = RunDir(run_dir if run_dir is not None else Path("runs") / spec.run.name)
    run.root.mkdir(parents=True, exist_ok=True)
    text = spec.to_toml()
    spec_path = run / "spec.toml"
    if not spec_path.exists() or spec_path.read_text(encoding="utf-8") != text:
        atomic_write_text(spec_path, text)
    manifest = run.load_manifest()
    manifest["versions"] = library_versions()
    manifest["seed"] = spec.run.seed
    run.save_manifest(manifest)
    return spec, run


def check_data(spec: Spec) -> None:
    """Load every role once, so bad data fails before any stage writes anything."""
    if spec.is_lm:
        from distillguard.stages.lm.checks import check_text_data

        check_text_data(spec)
        return
    schema, _ = load_members(spec.data, seed=spec.run.seed)
    for role in ROLES[1:]:
        split = load_role(spec.data, role, schema=schema, seed=spec.run.seed)
        if role == "transfer":
            guard_transfer(spec.data, split, schema=schema, seed=spec.run.seed)


def check_backend(spec: Spec) -> None:
    """A spec whose shadows train on Ray needs Ray here: say so before any model trains."""
    if spec.audit.backend == "ray" and spec.audit.shadows:
        from distillguard.audit.ray_backend import require_ray

        require_ray()


def train_teacher(spec: SpecLike = None, *, run_dir: str | Path | None = None) -> Path:
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    if not spec.is_lm:
        load_members(spec.data, seed=spec.run.seed)
    spec, run = open_run(spec, run_dir)
    run_stage(spec, run, "teacher")
    return run / "teacher"


def label(spec: SpecLike = None, *, run_dir: str | Path | None = None) -> Path:
    spec, run = open_run(spec, run_dir)
    run_stage(spec, run, "label")
    return run / "softlabels"


def distill(spec: SpecLike = None, *, run_dir: str | Path | None = None) -> Path:
    spec, run = open_run(spec, run_dir)
    run_stage(spec, run, "distill")
    return run / "student"


def audit(spec: SpecLike = None, *, run_dir: str | Path | None = None) -> RunResult:
    """Run the audit stage and (re)write report.json and report.html."""
    spec, run = open_run(spec, run_dir)
    run_stage(spec, run, "audit")
    return RunResult(run.root, report(run.root))


def report(run_dir: str | Path) -> dict[str, Any]:
    """(Re)render report.json and report.html of a run from its audit/ and spec.toml."""
    run = RunDir(run_dir)
    spec = load_spec(run / "spec.toml")
    result = build_report(run, spec)
    write_report(run, result)
    return result


def export(spec: SpecLike = None, *, run_dir: str | Path | None = None, destroy_teacher: bool = False) -> Path:
    spec, run = open_run(spec, run_dir)
    run_stage(spec, run, "export")
    if destroy_teacher:
        _destroy_teacher(run)
    return run / "deploy"


def run(spec: SpecLike = None, *, run_dir: str | Path | None = None, destroy_teacher: bool = False) -> RunResult:
    """The whole pipeline: teacher → label → distill → audit → report → export.

    Data are checked before anything is written. The gate's verdict is in the returned
    report; a failing gate is a result, not an error.
    """
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    check_data(spec)
    check_backend(spec)
    spec, run = open_run(spec, run_dir)
    run_stage(spec, run, "teacher")
    run_stage(spec, run, "label")
    run_stage(spec, run, "distill")
    run_stage(spec, run, "audit")
    result = report(run.root)
    run_stage(spec, run, "export")
    if destroy_teacher:
        _destroy_teacher(run)
    return RunResult(run.root, result)


def tune(spec: SpecLike = None, *, out_dir: str | Path | None = None, budget_minutes: float = 20.0,
         max_accuracy_drop: float = 0.03, keep_runs: bool = False):
    """Search the defense knobs (``distillguard tune``); see :func:`distillguard.tuning.search.tune`."""
    from distillguard.tuning import tune as _tune

    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    folder = Path(out_dir) if out_dir is not None else Path("runs") / f"{spec.run.name}-tune"
    return _tune(spec, folder=folder, budget_minutes=budget_minutes, max_accuracy_drop=max_accuracy_drop,
                 keep_runs=keep_runs)


def gate(run_dir: str | Path) -> dict[str, Any]:
    """The gate verdict of a finished run: the run's [gate] read against its report.json."""
    run = RunDir(run_dir)
    return evaluate_gate(read_json(run / "report.json"), load_spec(run / "spec.toml").gate)
