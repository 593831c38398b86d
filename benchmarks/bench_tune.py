"""The defense search on the built-in data sets: does a configuration keep the teacher's
accuracy and leave LiRA near chance, and does the chosen spec reproduce its prediction?

Usage: python benchmarks/bench_tune.py [--dataset purchase-synth|digits|all] [--budget-minutes 20]
                                       [--out runs/bench-tune]

For each data set: the plain-KD run of the built-in spec (undefended teacher and plain KD
student), then ``distillguard tune`` with the budget, then ``distillguard run`` of the
chosen ``best.toml``. Prints one markdown table per data set: test accuracy and LiRA
(online, calibrated on shadow pipelines that replay each defense) AUC and TPR at 1% FPR on
all records and on canaries, and the tuner's prediction next to the real run's numbers.
Not a test: wall-clock budgets make the search depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import distillguard
from distillguard.config import load_spec, parse_spec

SPECS = {
    "purchase-synth": {"run": {"name": "purchase-synth"}},  # the demo's defaults
    "digits": {"run": {"name": "digits"}, "data": {"builtin": "digits"},
               "audit": {"shadows": 16, "canaries": 32}},
}


def lira(report: dict, target: str, population: str) -> dict:
    return next(a for a in report["attacks"]
                if a["attack"] == "lira_online" and a["target"] == target and a["population"] == population)


def row(name: str, report: dict, target: str) -> str:
    acc = report["utility"][target]["test_accuracy"]
    a, c = lira(report, target, "all"), lira(report, target, "canaries")
    tpr = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    return (f"| {name} | {100 * acc:.1f}% | {a['auc']:.3f} [{a['auc_ci'][0]:.3f}, {a['auc_ci'][1]:.3f}] | "
            f"{tpr(a['tpr_at_fpr']['0.01'])} | {c['auc']:.3f} | {tpr(c['tpr_at_fpr']['0.01'])} |")


def bench(dataset: str, *, budget: float, out: Path) -> None:
    folder = out / dataset
    shutil.rmtree(folder, ignore_errors=True)
    spec = parse_spec(SPECS[dataset], base_dir=Path("."))
    started = time.perf_counter()
    plain = distillguard.run(spec, run_dir=folder / "plain").report
    t_plain = time.perf_counter() - started
    started = time.perf_counter()
    tuned = distillguard.tune(spec, out_dir=folder / "tune", budget_minutes=budget)
    t_tune = time.perf_counter() - started
    best = distillguard.run(load_spec(tuned.best_spec), run_dir=folder / "best").report
    c = tuned.chosen
    print(f"\n### {dataset} (load average {os.getloadavg()[0]:.1f}; plain run {t_plain:.0f} s, "
          f"tune {t_tune / 60:.1f} min of a {budget:g}-min budget, {len(tuned.evaluations)} evaluations, "
          f"{len(tuned.skipped)} skipped)\n")
    print("| model | test acc | LiRA AUC [95% CI] | LiRA TPR@1% | canary LiRA AUC | canary TPR@1% |")
    print("|---|---|---|---|---|---|")
    print(row("undefended teacher (not shipped)", plain, "teacher"))
    print(row("plain KD student", plain, "student"))
    print(row(f"tuned: {c.name}", best, "student"))
    a = lira(best, "student", "all")
    inside = c.auc_ci[0] <= a["auc"] <= c.auc_ci[1] or a["auc_ci"][0] <= c.auc <= a["auc_ci"][1]
    print(f"\nprediction vs run of best.toml: AUC {c.auc:.3f} [{c.auc_ci[0]:.3f}, {c.auc_ci[1]:.3f}] vs {a['auc']:.3f}"
          f" ({'within' if inside else 'OUTSIDE'} the intervals); accuracy {100 * c.accuracy:.1f}% "
          f"[{100 * c.accuracy_ci[0]:.1f}, {100 * c.accuracy_ci[1]:.1f}] on nonmembers vs "
          f"{100 * best['utility']['student']['test_accuracy']:.1f}% on the test split; "
          f"met the accuracy bar: {tuned.met_target}")
    teacher_acc = plain["utility"]["teacher"]["test_accuracy"]
    gap = teacher_acc - best["utility"]["student"]["test_accuracy"]
    print(f"targets: accuracy within 3 points of the teacher: {'yes' if gap <= 0.03 else 'NO'} ({100 * gap:+.1f}); "
          f"LiRA AUC <= 0.60: {'yes' if a['auc'] <= 0.60 else 'NO'}; <= 0.55: {'yes' if a['auc'] <= 0.55 else 'no'}; "
          f"TPR@1% <= 2%: {'yes' if (a['tpr_at_fpr']['0.01'] or 0) <= 0.02 else 'no'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=[*SPECS, "all"], default="all")
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tune"))
    args = parser.parse_args()
    for dataset in (list(SPECS) if args.dataset == "all" else [args.dataset]):
        bench(dataset, budget=args.budget_minutes, out=args.out)


if __name__ == "__main__":
    main()
