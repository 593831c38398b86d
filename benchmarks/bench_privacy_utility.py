"""Privacy–utility benchmark: plain KD, DP-SGD teachers and PATE behind one audit.

Usage: python benchmarks/bench_privacy_utility.py [--datasets digits purchase-synth]
           [--defenses none dp-sgd pate ensemble tuned] [--shadows 4] [--canaries 8]
           [--dp-epsilons 1 4 8] [--ensemble 5] [--tuned '{"softlabels": {"labels": "hard"}}']
           [--teacher-hidden 128] [--teacher-epochs 15] [--student-epochs 20]
           [--out FILE.md] [--keep DIR]

For each built-in data set it writes one spec per defense into a temp folder and runs the
real pipeline on it (``distillguard.run``: teacher → label → distill → full audit with
shadows that replay that defense → export):

* ``none``: the undefended teacher and its KD student;
* ``dp-sgd`` at each target ε: the DP-SGD teacher and the KD student of it (ε carries
  over to the student: distillation is post-processing);
* ``pate``: the PATE teacher ensemble (no guarantee of its own) and the PATE student,
  with the PATE defaults of the spec;
* ``ensemble``: the non-private ``[teacher] ensemble = n`` (n teachers on disjoint
  partitions of the members, averaged probabilities released: one record moves a soft
  label by at most 1/n) and its KD student; the ensemble is never shipped;
* ``tuned``: the configuration ``distillguard tune`` chose on the built-in data (hard
  labels on both data sets, see docs/results/tune.md),
  given as spec overrides with ``--tuned``; its teacher is the undefended one, so only the
  student is a row.

Prints one markdown table (and writes it to ``--out``): test accuracy, LiRA (online) AUC
and TPR at 0.1% and 1% FPR on all pool records and on the canaries, the accountant's ε
and the one-run empirical ε lower bound (Steinke et al. 2023). TPR at 0.1% FPR is null
("n/a") where there are fewer than 1,000 non-members to resolve it. Not a test: the
numbers depend on the machine only through timing; the results are seeded.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tomllib
from pathlib import Path

import distillguard
from distillguard.config import parse_spec
from results_page import add_docs_flag, publish

DATASETS = {
    # The built-in defaults (the demo's sizes); digits uses all 1,797 images.
    "digits": '[data]\nbuiltin = "digits"\n',
    "purchase-synth": '[data]\nbuiltin = "purchase-synth"\n',
}


DEFENSES = ("none", "dp-sgd", "pate", "ensemble", "tuned")
TUNED = {"softlabels": {"labels": "hard"}}  # what the search chose on both built-in data sets


def spec_text(dataset: str, defense: str, *, shadows: int, canaries: int, epsilon: float | None,
              recipe: str, overrides: dict[str, dict] | None = None) -> str:
    """The spec of one run as TOML: the recipe, the defense's privacy mechanism, then ``overrides``."""
    privacy = {"none": "", "ensemble": "", "tuned": "", "pate": 'mechanism = "pate"\n',
               "dp-sgd": f'mechanism = "dp-sgd"\nepsilon = {epsilon}\n'}[defense]
    name = f"{dataset}-{defense}" + (f"-eps{epsilon:g}" if epsilon is not None else "")
    text = (f'[run]\nname = "{name}"\nseed = 0\n' + DATASETS[dataset] + f"[privacy]\n{privacy}"
            + recipe + f"[audit]\nshadows = {shadows}\ncanaries = {canaries}\nbootstrap = 0\n")
    if not overrides:
        return text
    raw = tomllib.loads(text)
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    return parse_spec(raw, base_dir=Path(".")).to_toml()  # validated, so a bad override fails before any run


def attack(report: dict, target: str, population: str) -> dict | None:
    return next((a for a in report["attacks"] if a["attack"] == "lira_online" and a["target"] == target
                 and a["population"] == population), None)


def lower_bound(report: dict, target: str) -> float | None:
    eps = report.get("empirical_epsilon") or {}
    return next((e["epsilon_lower"] for e in eps.get("by_target", []) if e["target"] == target), None)


def rows_of(dataset: str, label: str, report: dict) -> list[dict]:
    """Up to two table rows (teacher, student) of one run."""
    privacy = report["privacy"]
    out = []
    for target, name in (("teacher", label[0]), ("student", label[1])):
        if name is None:
            continue
        eps = privacy.get("epsilon")
        if privacy["mechanism"] == "pate" and target == "teacher":
            eps = None  # the ensemble itself is trained without noise: no guarantee
        row = {"dataset": dataset, "model": name, "test_accuracy": report["utility"][target]["test_accuracy"],
               "epsilon": eps, "epsilon_lower": lower_bound(report, target), "mechanism": privacy["mechanism"]}
        for population in ("all", "canaries"):
            found = attack(report, target, population)
            row[population] = None if found is None else {
                "auc": found["auc"], "tpr_0.001": found["tpr_at_fpr"].get("0.001"),
                "tpr_0.01": found["tpr_at_fpr"].get("0.01"), "n_nonmembers": found["n_nonmembers"]}
        out.append(row)
    return out


def fmt(value, kind: str = "num") -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    return f"{value:.3f}" if kind == "num" else f"{value:.2f}"


def table(rows: list[dict]) -> str:
    lines = ["| data | model | test acc | LiRA AUC (all) | TPR@0.1% (all) | TPR@1% (all) | LiRA AUC (canaries) "
             "| TPR@0.1% (canaries) | TPR@1% (canaries) | ε (accountant) | ε lower (empirical) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, c = r["all"] or {}, r["canaries"] or {}
        eps = "∞ (none)" if r["epsilon"] is None and r["mechanism"] == "none" else (
            "— (no guarantee)" if r["epsilon"] is None else f"{r['epsilon']:.2f}")
        lines.append(f"| {r['dataset']} | {r['model']} | {fmt(r['test_accuracy'], 'pct')} | {fmt(a.get('auc'))} | "
                     f"{fmt(a.get('tpr_0.001'), 'pct')} | {fmt(a.get('tpr_0.01'), 'pct')} | {fmt(c.get('auc'))} | "
                     f"{fmt(c.get('tpr_0.001'), 'pct')} | {fmt(c.get('tpr_0.01'), 'pct')} | {eps} | "
                     f"{fmt(r['epsilon_lower'], 'eps')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--shadows", type=int, default=4, help="shadow pipelines per run (even; default 4)")
    parser.add_argument("--canaries", type=int, default=8, help="canaries planted in the shadows (default 8)")
    parser.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=DEFENSES,
                        help="which defenses to run (default: all)")
    parser.add_argument("--dp-epsilons", type=float, nargs="+", default=[1.0, 4.0, 8.0])
    parser.add_argument("--ensemble", type=int, default=5,
                        help="teachers of the non-private ensemble (default 5: ≥ 100 members per teacher on both "
                             "built-in data sets, so each still learns; one record moves a soft label by ≤ 1/5)")
    parser.add_argument("--tuned", type=json.loads, default=TUNED,
                        help="the tuned configuration as JSON spec overrides, {section: {key: value}} "
                             '(default: {"softlabels": {"labels": "hard"}}, the search\'s choice on both data sets)')
    parser.add_argument("--teacher-hidden", type=int, nargs="+", default=[128],
                        help="teacher MLP widths for every defense (default [128]; the spec default is [256, 256])")
    parser.add_argument("--teacher-epochs", type=int, default=15, help="teacher epochs (default 15; spec default 60)")
    parser.add_argument("--student-epochs", type=int, default=20, help="student epochs (default 20; spec default 80)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table and raw rows here")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here (default: a temp folder)")
    add_docs_flag(parser)
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="dg-privacy-utility-"))
    root.mkdir(parents=True, exist_ok=True)
    recipe = (f"[teacher]\nhidden = {args.teacher_hidden}\nepochs = {args.teacher_epochs}\n"
              f"[student]\nepochs = {args.student_epochs}\n")
    rows, timings = [], []
    for dataset in args.datasets:
        tuned_name = ", ".join(f"{k} = {json.dumps(v)}" for section in args.tuned.values() for k, v in section.items())
        runs = [("none", None, ("undefended teacher", "KD student"), None)]
        runs += [("dp-sgd", e, (f"DP-SGD teacher (ε={e:g})", f"KD student of DP-SGD teacher (ε={e:g})"), None)
                 for e in args.dp_epsilons]
        runs += [("pate", None, ("PATE teacher ensemble (not shipped)", "PATE student"), None)]
        runs += [("ensemble", None, (f"teacher ensemble of {args.ensemble} (not shipped)",
                                     f"KD student of the ensemble of {args.ensemble}"),
                  {"teacher": {"ensemble": args.ensemble}})]
        runs += [("tuned", None, (None, f"tuned student ({tuned_name})"), args.tuned)]
        for defense, epsilon, label, overrides in runs:
            if defense not in args.defenses:
                continue
            folder = root / f"{dataset}-{defense}" / (f"eps{epsilon:g}" if epsilon is not None else "run")
            folder.mkdir(parents=True, exist_ok=True)
            spec = folder / "spec.toml"
            spec.write_text(spec_text(dataset, defense, shadows=args.shadows, canaries=args.canaries, epsilon=epsilon,
                                      recipe=recipe, overrides=overrides))
            started = time.perf_counter()
            report = distillguard.run(spec, run_dir=folder / "run").report
            seconds = time.perf_counter() - started
            timings.append((dataset, defense, epsilon, seconds))
            rows += rows_of(dataset, label, report)
            for warning in report.get("warnings", []):
                print(f"WARNING ({dataset}, {defense}, ε={epsilon}): {warning}", flush=True)
            print(f"done: {dataset} {defense} ε={epsilon} in {seconds:.0f} s", flush=True)
            if args.out:  # a rerun with the same --keep skips the stages that are already fresh
                args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "timings": timings}, indent=1))
    text = table(rows)
    caption = (f"{args.shadows} shadow pipelines per run (each replaying its defense), {args.canaries} canaries, "
               f"teacher MLP {args.teacher_hidden} × {args.teacher_epochs} epochs, student MLP [128] × "
               f"{args.student_epochs} epochs, PATE defaults (20 teachers, σ = 4, plain GNMax), teacher ensemble of "
               f"{args.ensemble}, tuned = {json.dumps(args.tuned)}, LiRA online; "
               "TPR@0.1% is n/a where fewer than 1,000 non-members resolve it")
    print(caption + "\n\n" + text)
    print("\n| data | defense | ε target | seconds |\n|---|---|---|---|")
    for dataset, defense, epsilon, seconds in timings:
        print(f"| {dataset} | {defense} | {'' if epsilon is None else epsilon} | {seconds:.0f} |")
    if args.datasets == list(DATASETS) and args.defenses == list(DEFENSES):  # a subset would drop rows
        publish(args, "privacy-utility.md", "privacy-utility", text)
    if args.out:
        args.out.write_text(caption + "\n\n" + text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "timings": timings}, indent=1))


if __name__ == "__main__":
    main()
