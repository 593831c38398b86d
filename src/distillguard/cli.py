"""The ``distillguard`` command: parse, call :mod:`distillguard.api`, render with Rich.

Exit codes (CONTRACT.md): 0 success (``run`` exits 0 whatever the gate says), 1 a
failing gate under ``distillguard gate``, 2 bad input printed as one ``error:`` line,
3 an inconclusive gate (the audit lacked the power to decide).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from distillguard import api, distributed, progress
from distillguard.errors import DistillGuardError
from distillguard.report.verdict import INCONCLUSIVE_EXIT

INTERNAL_ERROR_EXIT = 4  # an unexpected exception (1 is a failing gate, 2 bad input, 3 an inconclusive gate)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Distill a private teacher into a student you can ship, and audit what it leaks.")
out = Console(soft_wrap=True)
err = Console(stderr=True)
_state: dict[str, Any] = {"debug": False}

SpecArg = Annotated[Path, typer.Argument(help="Spec file (TOML).", show_default=False)]
RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="Run folder (default: runs/NAME from the spec).")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", help="cpu, cuda, or auto (CUDA when PyTorch sees one). Not part of any fingerprint: a run may resume "
                     "on another device.")]


def _show_flags_as_flags() -> None:
    """Typer's help shows a flag's type (``--debug <bool>``), as if it took a value: show none."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "_flags_as_flags", False):
        return

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._flags_as_flags = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_show_flags_as_flags()


def _print_version(value: bool) -> None:
    if value:
        from distillguard import __version__

        out.print(f"distillguard {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
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
        err.print(_state.get("interrupted") or "interrupted: finished stages and training checkpoints "
                  "(RUN/.checkpoints) are kept; run the same command again to resume", markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, click.ClickException):
        raise
    except Exception:  # a bug, not bad input: its own exit code, so a script never mistakes it for a verdict
        if _state["debug"]:
            raise
        err.print(traceback.format_exc().rstrip(), markup=False, highlight=False, soft_wrap=True)
        err.print(f"internal error (exit {INTERNAL_ERROR_EXIT}): a bug in distillguard, not in your input; finished "
                  "stages are kept. Please report it with the traceback above.", markup=False, soft_wrap=True)
        raise typer.Exit(INTERNAL_ERROR_EXIT) from None


def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _summary(report: dict, run_dir: Path) -> None:
    u = report["utility"]
    lm = report.get("model_kind") == "causal-lm"
    table = Table(title=f"distillguard · {report['run']['name']}", show_lines=False)
    rows = [a for a in report["attacks"] if a["population"] == "all"]
    fprs = [(k, h) for k, h in (("0.01", "TPR@1%FPR"), ("0.001", "TPR@0.1%FPR"))
            if any(a["tpr_at_fpr"].get(k) is not None for a in rows)]  # a column n/a in every row says nothing
    for col in ("model", "test ppl" if lm else "test acc", "attack", "AUC", *(h for _, h in fprs)):
        table.add_column(col, justify="left" if col in ("model", "attack") else "right")
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for a in rows:
        tpr = a["tpr_at_fpr"]
        utility = f"{u[a['target']]['test_perplexity']:.2f}" if lm else fmt(u[a["target"]]["test_accuracy"])
        table.add_row(a["target"], utility, a["attack"], f"{a['auc']:.3f}", *(fmt(tpr.get(k)) for k, _ in fprs))
    out.print(table)
    if lm:
        _lm_summary(report)
    gate = report["gate"]
    verdict = _VERDICTS[gate.get("verdict", "pass" if gate["passed"] else "fail")]
    bundle = "" if "scan" in report else f"; bundle: {run_dir / 'deploy'}"
    out.print(f"gate {verdict} ({gate['attack']} on {gate['target']}); report: {run_dir / 'report.html'}{bundle}")
    if report.get("scan", {}).get("attacks_not_run"):
        out.print(f"not run: {', '.join(report['scan']['attacks_not_run'])} (a weaker bound, never a safer model)",
                  highlight=False, markup=False)
    _explain_verdict(gate, run_dir=run_dir)


_VERDICTS = {"pass": "[green]PASSED[/green]", "fail": "[red]FAILED[/red]", "inconclusive": "[yellow]INCONCLUSIVE[/yellow]"}


def _explain_verdict(gate: dict, *, run_dir: Path | None = None) -> None:
    """Why an inconclusive verdict decides nothing, and the next commands after a fail.

    The report writes the run folder as ``RUN`` (it may move); here it is filled in.
    """
    for reason in gate.get("reasons", []):
        out.print(f"  inconclusive: {reason}", markup=False, highlight=False)
    for fix in gate.get("to_conclude", []):
        out.print(f"  to conclude: {fix}", markup=False, highlight=False)
    if gate.get("note"):
        out.print(f"  note: {gate['note']}", markup=False, highlight=False)
    if gate.get("next_steps"):
        out.print("next steps:", markup=False)
        for step in gate["next_steps"]:
            command = step["command"].replace("RUN/", f"{run_dir}/") if run_dir is not None else step["command"]
            out.print(f"  {step['what']}:\n    {command}", markup=False, highlight=False)


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
def scan(spec: SpecArg, run_dir: RunDirOpt = None, device: DeviceOpt = "auto") -> None:
    """Audit a model you bring ([scan] model = PATH) or its saved predictions ([scan] predictions = PATH)."""
    result = _guard(api.scan, spec, run_dir=run_dir, device=device)
    _summary(result.report, result.run_dir)


@app.command()
def export(
    spec: SpecArg, run_dir: RunDirOpt = None,
    destroy_teacher: Annotated[bool, typer.Option("--destroy-teacher", help="Delete the teacher after export.")] = False,
    device: DeviceOpt = "auto",
    onnx: Annotated[bool, typer.Option("--onnx", help="Also write the student as deploy/model.onnx (checked against "
                                                      "PyTorch); needs the serve extra.")] = False,
) -> None:
    """Write the deploy bundle (student only)."""
    folder = _guard(api.export, spec, run_dir=run_dir, destroy_teacher=destroy_teacher, device=device, onnx=onnx)
    out.print(f"bundle: {folder}")


@app.command()
def serve(
    deploy_dir: Annotated[Path, typer.Argument(help="Deploy folder (RUN/deploy).", show_default=False)],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Worker processes (each keeps its own budget "
                                                                  "table and metrics).")] = 1,
    allow_failed_gate: Annotated[bool, typer.Option(
        "--allow-failed-gate", help="Serve a bundle whose audit failed its release gate.")] = False,
    query_budget: Annotated[int | None, typer.Option(
        "--query-budget", min=1, help="Rows per client per window (default: the bundle's [deploy] query_budget).")] = None,
    budget_window: Annotated[float | None, typer.Option(
        "--budget-window", min=0.001, help="Budget window in seconds (default: the bundle's).")] = None,
    max_rows: Annotated[int | None, typer.Option("--max-rows", min=1, help="Rows per request (default: the bundle's).")] = None,
    trusted_proxy: Annotated[str | None, typer.Option(
        "--trusted-proxy", help="Address(es) of a reverse proxy whose X-Forwarded-For names the client "
                                "(comma-separated); unset, the client is the connection's address.")] = None,
) -> None:
    """Serve the deploy bundle over HTTP in its audited output form (a causal LM: its audited decoding), with a per-client query budget."""
    from distillguard.serve.server import serve as _serve

    limits = {"query_budget": query_budget, "budget_window_seconds": budget_window, "max_rows": max_rows}
    _guard(_serve, deploy_dir, host=host, port=port, workers=workers, allow_failed_gate=allow_failed_gate,
           limits={k: v for k, v in limits.items() if v is not None}, trusted_proxies=trusted_proxy)


@app.command()
def gate(run_dir: Annotated[Path, typer.Argument(help="Run folder.", show_default=False)]) -> None:
    """Exit 0 when the gate passes, 1 when it fails, 3 when the audit is inconclusive (too little power)."""
    verdict = _guard(api.gate, run_dir)
    for check in verdict["checks"]:
        value = "n/a" if check["value"] is None else f"{check['value']:.4f}"
        mark = "pass" if check["passed"] else "FAIL"
        out.print(f"{mark}  {check['name']}: {value} (max {check['threshold']})", highlight=False, markup=False)
    out.print(f"gate {_VERDICTS[verdict['verdict']]}")
    _explain_verdict(verdict)
    raise typer.Exit({"pass": 0, "fail": 1}.get(verdict["verdict"], INCONCLUSIVE_EXIT))


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="Run folder.", show_default=False)]) -> None:
    """Re-render report.html and report.json from audit/."""
    _summary(_guard(api.report, run_dir), run_dir)


@app.command()
def tune(
    spec: SpecArg,
    budget_minutes: Annotated[float, typer.Option(
        "--budget-minutes", help="Wall-clock budget of the search; one shorter than a single evaluation stops at once.")] = 20.0,
    max_accuracy_drop: Annotated[float, typer.Option(
        "--max-accuracy-drop", min=0.0, max=1.0, help="Accuracy a defense may cost, below the undefended teacher's.")] = 0.03,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default: runs/NAME-tune).")] = None,
    keep_runs: Annotated[bool, typer.Option("--keep-runs", help="Keep the candidate runs and data copies (sensitive).")] = False,
) -> None:
    """Search the defense knobs for the least leaky student within the accuracy bar; write best.toml."""
    _state["interrupted"] = ("interrupted: tune kept its candidate runs (--keep-runs); run the same command again to "
                             "reuse them" if keep_runs else "interrupted: tune removed its private copies of the data "
                             "and its candidate runs; nothing sensitive was left behind")
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
    if result.skipped:
        out.print(f"budget: {len(result.skipped)} evaluation(s) did not fit in {budget_minutes:g} min and were skipped "
                  f"({', '.join(result.skipped[:3])}{', …' if len(result.skipped) > 3 else ''}); "
                  "a larger --budget-minutes evaluates them")


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
