"""DP-SGD at matched leakage: the ε whose KD student leaks as much as the tuned student.

Usage: python benchmarks/bench_dp_matched.py [--dataset purchase-synth|digits|all]
           [--target purchase-synth=0.593 digits=0.503] [--epsilons 8 32 128 1000]
           [--shadows 16] [--canaries 32] [--teacher-hidden 256 256] [--teacher-epochs 60]
           [--student-epochs 80] [--out runs/bench-dp-matched]

For each data set it runs the built-in spec of ``bench_tune.py`` (the default recipe:
teacher MLP [256, 256] × 60 epochs, student [128] × 80, and the same audit as the tune
table unless ``--shadows``/``--canaries`` say otherwise) with ``[privacy] mechanism =
"dp-sgd"`` at each ε in turn, upward, and stops at the first ε whose KD student's LiRA
(online) AUC on all records reaches the target (the tuned student's AUC in docs/results/tune.md's
tune table). The matched ε is the one of those run whose student AUC is closest to the
target. Prints the tune table's row format for the DP-SGD teacher and its KD student of
every ε run, and which one matches. Not a test: the numbers are seeded, the seconds
depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench_tune import SPECS, lira, row

import distillguard
from distillguard.config import parse_spec
from distillguard.errors import DistillGuardError
from results_page import add_docs_flag, publish

TARGETS = {"purchase-synth": 0.593, "digits": 0.503}  # tuned student's LiRA AUC, docs/results/tune.md


def dp_spec(dataset: str, epsilon: float, *, shadows: int | None, canaries: int | None,
            recipe: dict[str, dict] | None = None):
    """The data set's built-in spec with a DP-SGD teacher at ``epsilon``; ``None`` keeps the spec's value."""
    raw = json.loads(json.dumps(SPECS[dataset]))
    raw["run"]["name"] = f"{dataset}-dp-eps{epsilon:g}"
    raw["privacy"] = {"mechanism": "dp-sgd", "epsilon": epsilon}
    audit = raw.setdefault("audit", {})
    for key, value in (("shadows", shadows), ("canaries", canaries)):
        if value is not None:
            audit[key] = value
    for section, values in (recipe or {}).items():
        raw[section] = {**raw.get(section, {}), **{k: v for k, v in values.items() if v is not None}}
    return parse_spec(raw, base_dir=Path("."))


def bench(dataset: str, *, target: float, epsilons: list[float], shadows: int | None, canaries: int | None,
          recipe: dict[str, dict], out: Path) -> str:
    """Raise ε until the DP-SGD teacher's KD student reaches ``target``; prints progress, returns the table."""
    spec0 = dp_spec(dataset, epsilons[0], shadows=shadows, canaries=canaries, recipe=recipe)
    print(f"\n### {dataset}: target LiRA AUC {target:.3f} ({spec0.audit.shadows} shadows, {spec0.audit.canaries} "
          f"canaries, bootstrap {spec0.audit.bootstrap}; teacher {spec0.teacher.hidden} × {spec0.teacher.epochs}, "
          f"student {spec0.student.hidden} × {spec0.student.epochs})\n", flush=True)
    found, rows = [], ["| model | test acc | LiRA AUC [95% CI] | LiRA TPR@1% | canary LiRA AUC | canary TPR@1% |",
                       "|---|---|---|---|---|---|"]
    for epsilon in sorted(epsilons):
        spec = dp_spec(dataset, epsilon, shadows=shadows, canaries=canaries, recipe=recipe)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        try:
            report = distillguard.run(spec, run_dir=out / dataset / f"eps{epsilon:g}").report
        except DistillGuardError as error:  # e.g. an ε the accountant cannot calibrate
            print(f"failed: ε={epsilon:g}: {error}", flush=True)
            continue
        seconds = time.perf_counter() - started
        auc = lira(report, "student", "all")["auc"]
        found.append((epsilon, auc, report))
        print(f"done: ε={epsilon:g} in {seconds:.0f} s (load average {load:.1f} at start, "
              f"{os.getloadavg()[0]:.1f} at end): student AUC {auc:.3f}", flush=True)
        rows += [row(f"DP-SGD teacher (ε={epsilon:g})", report, "teacher"),
                 row(f"KD student of DP-SGD teacher (ε={epsilon:g})", report, "student")]
        print("\n".join(rows[-2:]), flush=True)
        if auc >= target:
            break
    if not found:
        print("\nno ε ran", flush=True)
        return "no ε ran"
    epsilon, auc, report = min(found, key=lambda f: abs(f[1] - target))
    reached = any(a >= target for _, a, _ in found)
    matched = (f"matched: ε={epsilon:g}, student AUC {auc:.3f} vs target {target:.3f}"
               f"{'' if reached else ' (no ε tried reaches the target: the largest is the closest)'}; "
               f"student test accuracy {100 * report['utility']['student']['test_accuracy']:.1f}%")
    print("\n" + matched, flush=True)
    return "\n".join(rows) + "\n\n" + matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=[*SPECS, "all"], default="all")
    parser.add_argument("--target", nargs="+", default=[f"{k}={v}" for k, v in TARGETS.items()],
                        help="DATASET=AUC pairs: the tuned student's LiRA AUC to match")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[8.0, 32.0, 128.0, 1000.0])
    parser.add_argument("--shadows", type=int, default=None, help="default: the spec's (16)")
    parser.add_argument("--canaries", type=int, default=None, help="default: the spec's (32)")
    parser.add_argument("--teacher-hidden", type=int, nargs="+", default=None, help="default: the spec's [256, 256]")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: the spec's 60")
    parser.add_argument("--student-epochs", type=int, default=None, help="default: the spec's 80")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-dp-matched"))
    add_docs_flag(parser)
    args = parser.parse_args()
    targets = {k: float(v) for k, v in (t.split("=") for t in args.target)}
    recipe = {"teacher": {"hidden": args.teacher_hidden, "epochs": args.teacher_epochs},
              "student": {"epochs": args.student_epochs}}
    for dataset in (list(SPECS) if args.dataset == "all" else [args.dataset]):
        table = bench(dataset, target=targets[dataset], epsilons=args.epsilons, shadows=args.shadows,
                      canaries=args.canaries, recipe=recipe, out=args.out)
        publish(args, "dp-matched.md", f"dp-matched-{dataset}", table)


if __name__ == "__main__":
    main()
