"""The ``distillguard`` command: parse, call :mod:`distillguard.api`, render with Rich.

Exit codes (CONTRACT.md): 0 success (``run`` exits 0 whatever the gate says), 1 a
failing gate under ``distillguard gate``, 2 bad input printed as one ``error:`` line.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from distillguard import api, distributed, progress
from distillguard.errors import DistillGuardError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Distill a private teacher into a student you can ship, and audit what it leaks.")
out = Console(soft_wrap=True)
err = Console(stderr=True)
_state = {"debug": False}

SpecArg = Annotated[Path, typer.Argument(help="Spec file (TOML).", show_default=False)]
RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="Run folder (default: runs/NAME from the spec).")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="cpu, cuda, or auto (CUDA when PyTorch sees one). Not part of any fingerprint: a run may resume "
                     "on another device.")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    _state["debug"] = debug


def _guard(fn, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn``; user errors become one ``error:`` line and exit 2 (traceback with --debug)."""
    try:
        if not _is_main_rank():  # under torchrun only rank 0 draws and prints
            out.quiet = True
            return fn(*args, **kwargs)
        with progress.enabled(err):
            return fn(*args, **kwargs)
    except DistillGuardError as error:
        if _state["debug"]:
            raise
        err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted: finished stages and training checkpoints (RUN/.checkpoints) are kept; "
                  "run the same command again to resume", markup=False, soft_wrap=True)
        raise typer.Exit(130) from None


def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _summary(report: dict, run_dir: Path) -> None:
    u = report["utility"]
    lm = report.get("model_kind") == "causal-lm"
    table = Table(title=f"distillguard · {report['run']['name']}", show_lines=False)
    for col in ("model", "test ppl" if lm else "test acc", "attack", "AUC", "TPR@1%FPR", "TPR@0.1%FPR"):
        table.add_column(col, justify="left" if col in ("model", "attack") else "right")
    for a in report["attacks"]:
        if a["population"] != "all":
            continue
        tpr = a["tpr_at_fpr"]
        fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        utility = f"{u[a['target']]['test_perplexity']:.2f}" if lm else f"{100 * u[a['target']]['test_accuracy']:.1f}%"
        table.add_row(a["target"], utility, a["attack"], f"{a['auc']:.3f}",
                      fmt(tpr.get("0.01")), fmt(tpr.get("0.001")))
    out.print(table)
    if lm:
        _lm_summary(report)
    gate = report["gate"]
    verdict = "[green]PASSED[/green]" if gate["passed"] else "[red]FAILED[/red]"
    out.print(f"gate {verdict} ({gate['attack']} on {gate['target']}); report: {run_dir / 'report.html'}; "
              f"bundle: {run_dir / 'deploy'}")


def _lm_summary(report: dict) -> None:
    from distillguard.report.model_card import exposure_summary

    for e in exposure_summary(report.get("probes", [])):
        out.print(f"canaries x{e['repetitions']}: {e['target']} mean exposure {e['mean_exposure_bits']:.2f} bits "
                  f"(baseline {e['mean_baseline_bits']:.2f}, max {e['max_bits']:.2f})", highlight=False)
    worst = report.get("canary_exposure")
    if worst:
        row = next(r for r in worst["canaries"] if r["canary_id"] == worst["worst_canary_id"])
        out.print(f"worst canary ({worst['target']}): id {row['canary_id']}, x{row['repetitions']}, exposure "
                  f"{row['exposure_bits']:.2f} bits over a baseline of {row['baseline_bits']:.2f} "
                  f"(+{row['excess_bits']:.2f})", highlight=False)
    for p in report.get("probes", []):
        if p.get("probe") == "pii_completion":
            out.print(f"PII completion exact match, {p['target']}: {100 * p['exact_match_rate']:.1f}% of {p['n']}",
                      highlight=False)


@app.command()
def run(
    spec: Annotated[Path | None, typer.Argument(help="Spec file (TOML); omit for the built-in demo.", show_default=False)] = None,
    run_dir: RunDirOpt = None,
    destroy_teacher: Annotated[bool, typer.Option("--destroy-teacher", help="Delete the teacher after export.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Run the whole pipeline: teacher, label, distill, audit, report, export."""
    result = _guard(api.run, spec, run_dir=run_dir, destroy_teacher=destroy_teacher, device=device)
    _summary(result.report, result.run_dir)


@app.command()
def teacher(spec: SpecArg, run_dir: RunDirOpt = None, device: DeviceOpt = "auto") -> None:
    """Train (or load) the teacher on the members."""
    out.print(f"teacher: {_guard(api.train_teacher, spec, run_dir=run_dir, device=device)}")


@app.command()
def label(spec: SpecArg, run_dir: RunDirOpt = None, device: DeviceOpt = "auto") -> None:
    """Store the teacher's logits on the transfer set."""
    out.print(f"soft labels: {_guard(api.label, spec, run_dir=run_dir, device=device)}")


@app.command()
def distill(spec: SpecArg, run_dir: RunDirOpt = None, device: DeviceOpt = "auto") -> None:
    """Train the student on the stored soft labels only."""
    out.print(f"student: {_guard(api.distill, spec, run_dir=run_dir, device=device)}")


@app.command()
def audit(spec: SpecArg, run_dir: RunDirOpt = None, device: DeviceOpt = "auto") -> None:
    """Audit teacher vs student and write report.json / report.html."""
    result = _guard(api.audit, spec, run_dir=run_dir, device=device)
    _summary(result.report, result.run_dir)


@app.command()
def export(
    spec: SpecArg, run_dir: RunDirOpt = None,
    destroy_teacher: Annotated[bool, typer.Option("--destroy-teacher", help="Delete the teacher after export.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Write the deploy bundle (student only)."""
    out.print(f"bundle: {_guard(api.export, spec, run_dir=run_dir, destroy_teacher=destroy_teacher, device=device)}")


@app.command()
def gate(run_dir: Annotated[Path, typer.Argument(help="Run folder.", show_default=False)]) -> None:
    """Exit 0 when every gate check passes, 1 when one fails."""
    verdict = _guard(api.gate, run_dir)
    for check in verdict["checks"]:
        value = "n/a" if check["value"] is None else f"{check['value']:.4f}"
        mark = "pass" if check["passed"] else "FAIL"
        out.print(f"{mark}  {check['name']}: {value} (max {check['threshold']})", highlight=False, markup=False)
    out.print(f"gate {'PASSED' if verdict['passed'] else 'FAILED'}")
    raise typer.Exit(0 if verdict["passed"] else 1)


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="Run folder.", show_default=False)]) -> None:
    """Re-render report.html and report.json from audit/."""
    _summary(_guard(api.report, run_dir), run_dir)


@app.command()
def tune(
    spec: SpecArg,
    budget_minutes: Annotated[float, typer.Option("--budget-minutes", min=0.1, help="Wall-clock budget of the search.")] = 20.0,
    max_accuracy_drop: Annotated[float, typer.Option(
        "--max-accuracy-drop", min=0.0, max=1.0, help="Accuracy a defense may cost, below the undefended teacher's.")] = 0.03,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default: runs/NAME-tune).")] = None,
    keep_runs: Annotated[bool, typer.Option("--keep-runs", help="Keep the candidate runs and data copies (sensitive).")] = False,
) -> None:
    """Search the defense knobs for the least leaky student within the accuracy bar; write best.toml."""
    result = _guard(api.tune, spec, out_dir=out_dir, budget_minutes=budget_minutes,
                    max_accuracy_drop=max_accuracy_drop, keep_runs=keep_runs)
    table = Table(title=f"distillguard tune · teacher {100 * result.teacher_accuracy:.1f}% on nonmembers")
    for col in ("candidate", "shadows", "accuracy", "AUC", "TPR@1%FPR", "canary AUC"):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for i, e in enumerate(result.evaluations):
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        name = f"[bold]{e.name}[/bold]" if i in result.front else e.name
        table.add_row(name, str(e.shadows), f"{e.accuracy:.3f}", f"{e.auc:.3f}", fmt(e.tpr), fmt(e.canary_auc))
    out.print(table)
    verdict = "within the accuracy bar" if result.met_target else "[red]no candidate met the accuracy bar[/red]"
    out.print(f"chosen: {result.chosen.name} ({verdict}); spec: {result.best_spec}; "
              f"report: {result.folder / 'report.html'} ({result.elapsed_seconds / 60:.1f} min)")


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a scheduler's SIGTERM stops as cleanly as Ctrl-C


def main() -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        app(prog_name="distillguard")
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
