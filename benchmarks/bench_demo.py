"""The built-in demo, timed: per-stage wall time and the teacher-vs-student table.

Usage: python benchmarks/bench_demo.py [--spec SPEC] [--run-dir DIR]
Prints markdown ready for the README. Not a test: numbers depend on the machine.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=None, help="spec file (default: the built-in demo)")
    parser.add_argument("--run-dir", default=None, help="run folder (default: a fresh temp folder)")
    args = parser.parse_args()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="dg-bench-"))
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    result = distillguard.run(args.spec, run_dir=run_dir)
    total = time.perf_counter() - started
    manifest = json.loads((run_dir / "manifest.json").read_text())
    print(f"torch threads: {torch.get_num_threads()}; total wall time {total:.1f} s")
    print("| stage | seconds |\n|---|---|")
    for name, record in manifest["stages"].items():
        print(f"| {name} | {record['seconds']:.1f} |")
    report = result.report
    u = report["utility"]
    print("\n| model | test acc | population | loss AUC | LiRA online AUC | LiRA TPR@1%FPR | RMIA AUC | RMIA TPR@1%FPR |")
    print("|---|---|---|---|---|---|---|---|")
    for target in ("teacher", "student"):
        for population in ("all", "canaries"):
            get = {a["attack"]: a for a in report["attacks"] if a["target"] == target and a["population"] == population}
            if not get:
                continue
            pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
            print(f"| {target} | {100 * u[target]['test_accuracy']:.1f}% | {population} | {get['loss']['auc']:.3f} | "
                  f"{get['lira_online']['auc']:.3f} | {pct(get['lira_online']['tpr_at_fpr']['0.01'])} | "
                  f"{get['rmia']['auc']:.3f} | {pct(get['rmia']['tpr_at_fpr']['0.01'])} |")
    eps = report.get("empirical_epsilon")
    if eps:
        for e in eps["by_target"]:
            print(f"\nempirical ε lower bound ({e['target']}, {e['method']}): {e['epsilon_lower']:.2f} "
                  f"({e['correct']}/{e['guesses']} correct guesses on {e['n_canaries']} canaries, δ={e['delta']})")
    print(f"gate passed: {report['gate']['passed']}")


if __name__ == "__main__":
    main()
