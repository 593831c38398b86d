"""The built-in demo, timed: per-stage wall time and the teacher-vs-student table.

Usage: python benchmarks/bench_demo.py [--spec SPEC] [--run-dir DIR] [--existing] [--no-docs]
Prints markdown and writes it into docs/results/demo.md (``--no-docs``: print only). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

import distillguard
from results_page import add_docs_flag, publish


def tables(report: dict, manifest: dict, *, total_seconds: float | None) -> str:
    """The stage times and the teacher-vs-student table, as markdown."""
    total = "not timed (an existing run)" if total_seconds is None else f"{total_seconds:.1f} s"
    lines = [f"torch threads: {torch.get_num_threads()}; total wall time {total}", "",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {record['seconds']:.1f} |" for name, record in manifest["stages"].items()]
    u = report["utility"]
    lines += ["", "| model | test acc | population | loss AUC | LiRA online AUC | LiRA TPR@1%FPR | RMIA AUC | RMIA TPR@1%FPR "
              "| strongest AUC | strongest TPR@1%FPR | strongest TPR@0FP |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for target in ("teacher", "student"):
        for population in ("all", "canaries"):
            get = {a["attack"]: a for a in report["attacks"] if a["target"] == target and a["population"] == population}
            if not get:
                continue
            lines.append(f"| {target} | {100 * u[target]['test_accuracy']:.1f}% | {population} | {get['loss']['auc']:.3f} | "
                         f"{get['lira_online']['auc']:.3f} | {pct(get['lira_online']['tpr_at_fpr']['0.01'])} | "
                         f"{get['rmia']['auc']:.3f} | {pct(get['rmia']['tpr_at_fpr']['0.01'])} | "
                         + (f"{get['strongest']['auc']:.3f} | {pct(get['strongest']['tpr_at_fpr']['0.01'])} | "
                            f"{pct(get['strongest']['tpr_at_fpr']['0'])} |" if "strongest" in get else "n/a | n/a | n/a |"))
    for target in ("teacher", "student"):
        chosen = next((a["configuration"] for a in report["attacks"] if a["attack"] == "strongest"
                       and a["target"] == target and a["population"] == "all"), None)
        if chosen:
            params = ", ".join(f"{k}={v}" for k, v in chosen["params"].items())
            lines.append(f"\nstrongest on the {target}: {chosen['attack']} ({params}), chosen leave-one-out on its shadows")
    label_only = [a for a in report["attacks"] if a["attack"] in ("label_gap", "label_noise") and a["population"] == "all"]
    if label_only:
        lines += ["", "| model | label-only attack | queries per record | AUC | TPR@1%FPR |", "|---|---|---|---|---|"]
        lines += [f"| {a['target']} | {a['attack']} | {a.get('queries_per_record', 'n/a')} | {a['auc']:.3f} | "
                  f"{pct(a['tpr_at_fpr'].get('0.01'))} |" for a in label_only]
    eps = report.get("empirical_epsilon")
    if eps:
        for e in eps["by_target"]:
            lines.append(f"\nempirical ε lower bound ({e['target']}, {e['method']}): {e['epsilon_lower']:.2f} "
                         f"({e['correct']}/{e['guesses']} correct guesses on {e['n_canaries']} canaries, δ={e['delta']})")
    lines.append(f"\ngate passed: {report['gate']['passed']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=None, help="spec file (default: the built-in demo)")
    parser.add_argument("--run-dir", default=None, help="run folder (default: a fresh temp folder)")
    parser.add_argument("--existing", action="store_true", help="print the tables of the finished run in --run-dir")
    add_docs_flag(parser)
    args = parser.parse_args()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="dg-bench-"))
    if args.existing:
        report, total = json.loads((run_dir / "report.json").read_text()), None
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        started = time.perf_counter()
        report = distillguard.run(args.spec, run_dir=run_dir).report
        total = time.perf_counter() - started
    manifest = json.loads((run_dir / "manifest.json").read_text())
    text = tables(report, manifest, total_seconds=total)
    print(text)
    if args.spec is None:  # the page documents the built-in demo only
        publish(args, "demo.md", "demo", text)


if __name__ == "__main__":
    main()
