"""The public Python API; the CLI is a thin shell over these functions.

The stage functions live in :mod:`distillguard.pipeline`; this module adds the search
(``tune``), the gate and the deploy bundle, and is the one import a user needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distillguard.bundle import Bundle, load_bundle
from distillguard.config import Spec, load_spec
from distillguard.pipeline import (RunResult, SpecLike, audit, check_backend, check_data, computing_on, distill,
                                   export, label, open_run, report, run, scan, train_teacher)
from distillguard.report.verdict import gate_verdict
from distillguard.runs import RunDir, read_json

__all__ = ["Bundle", "RunResult", "audit", "check_backend", "check_data", "computing_on", "distill", "export", "gate",
           "label", "load_bundle", "open_run", "report", "run", "scan", "train_teacher", "tune"]


def tune(spec: SpecLike = None, *, out_dir: str | Path | None = None, budget_minutes: float = 20.0,
         max_accuracy_drop: float = 0.03, keep_runs: bool = False):
    """Search the defense knobs (``distillguard tune``); see :func:`distillguard.tuning.search.tune`."""
    from distillguard.tuning import tune as _tune

    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    folder = Path(out_dir) if out_dir is not None else Path("runs") / f"{spec.run.name}-tune"
    return _tune(spec, folder=folder, budget_minutes=budget_minutes, max_accuracy_drop=max_accuracy_drop,
                 keep_runs=keep_runs)


def gate(run_dir: str | Path) -> dict[str, Any]:
    """The gate verdict of a finished run: the run's [gate] read against its report.json.

    ``verdict`` is "pass", "fail" or "inconclusive" (the audit lacked the power to decide;
    see :mod:`distillguard.report.verdict`); ``passed`` is true only for "pass".
    """
    run = RunDir(run_dir)
    spec_path = (run / "spec.toml").resolve()
    return gate_verdict(read_json(run / "report.json"), load_spec(spec_path).gate, spec_path=str(spec_path))
