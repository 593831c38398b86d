"""Knob combinations beyond the tuner's space, on the built-in purchase-synth spec.

Usage: python benchmarks/bench_knobs.py [--combos NAME ...] [--out runs/bench-knobs]

Each combination is a set of spec overrides on the built-in spec of ``bench_tune.py``
(default recipe, full audit: 16 shadow pipelines that replay the defense, 32 canaries),
run with ``distillguard.run`` and printed in the tune table's row format, with its
seconds and the load average. The issue's goal on purchase-synth: LiRA AUC ≤ 0.55 and
TPR at 1% FPR ≤ 2% on all records, test accuracy within 3 points of the undefended
teacher (91.2%). Not a test: the numbers are seeded, the seconds depend on the machine.
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
from results_page import add_docs_flag, publish

HARD = {"labels": "hard"}
COMBOS: dict[str, dict[str, dict]] = {  # most promising first
    "hard labels + ensemble of 2": {"softlabels": HARD, "teacher": {"ensemble": 2}},
    "hard labels + regularised teacher (wd 5e-3, smoothing 0.1)":
        {"softlabels": HARD, "teacher": {"weight_decay": 5e-3, "label_smoothing": 0.1}},
    "hard labels + teacher 20 epochs": {"softlabels": HARD, "teacher": {"epochs": 20}},
    "hard labels + student 20 epochs": {"softlabels": HARD, "student": {"epochs": 20}},
    "hard labels + student weight decay 0.05": {"softlabels": HARD, "student": {"weight_decay": 0.05}},
    "hard labels + logit noise σ=1.5": {"softlabels": {**HARD, "logit_noise": 1.5}},
    "hard labels + ensemble of 3": {"softlabels": HARD, "teacher": {"ensemble": 3}},
    "hard labels + far-from-private 50%":
        {"softlabels": HARD, "transfer": {"select": "far_from_private", "keep_fraction": 0.5}},
    # second round: combinations of the first round's best
    "hard labels + ensemble of 2 + regularised teacher":
        {"softlabels": HARD, "teacher": {"ensemble": 2, "weight_decay": 5e-3, "label_smoothing": 0.1}},
    "hard labels + ensemble of 3 + regularised teacher":
        {"softlabels": HARD, "teacher": {"ensemble": 3, "weight_decay": 5e-3, "label_smoothing": 0.1}},
    "hard labels + strongly regularised teacher (wd 2e-2, smoothing 0.3)":
        {"softlabels": HARD, "teacher": {"weight_decay": 2e-2, "label_smoothing": 0.3}},
    "hard labels + ensemble of 2 + strongly regularised teacher":
        {"softlabels": HARD, "teacher": {"ensemble": 2, "weight_decay": 2e-2, "label_smoothing": 0.3}},
    # third round
    "hard labels + very strongly regularised teacher (wd 5e-2, smoothing 0.5)":
        {"softlabels": HARD, "teacher": {"weight_decay": 5e-2, "label_smoothing": 0.5}},
    "hard labels + strongly regularised teacher + far-from-private 70%":
        {"softlabels": HARD, "teacher": {"weight_decay": 2e-2, "label_smoothing": 0.3},
         "transfer": {"select": "far_from_private", "keep_fraction": 0.7}},
    # fourth round
    "hard labels + ensemble of 4 + strongly regularised teacher":
        {"softlabels": HARD, "teacher": {"ensemble": 4, "weight_decay": 2e-2, "label_smoothing": 0.3}},
    "hard labels + ensemble of 2 + strongly regularised teacher + far-from-private 70%":
        {"softlabels": HARD, "teacher": {"ensemble": 2, "weight_decay": 2e-2, "label_smoothing": 0.3},
         "transfer": {"select": "far_from_private", "keep_fraction": 0.7}},
}


def combo_spec(name: str, overrides: dict[str, dict]):
    raw = json.loads(json.dumps(SPECS["purchase-synth"]))
    raw["run"]["name"] = "knobs-" + "".join(c if c.isascii() and c.isalnum() else "-" for c in name)[:60]
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    return parse_spec(raw, base_dir=Path("."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combos", nargs="+", default=list(COMBOS), choices=list(COMBOS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-knobs"))
    add_docs_flag(parser)
    args = parser.parse_args()
    lines = ["| model | test acc | LiRA AUC [95% CI] | LiRA TPR@1% | canary LiRA AUC | canary TPR@1% |", "|---|---|---|---|---|---|"]
    print("\n".join(lines))
    for name in args.combos:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        folder = args.out / combo_spec(name, COMBOS[name]).run.name
        report = distillguard.run(combo_spec(name, COMBOS[name]), run_dir=folder).report
        seconds = time.perf_counter() - started
        a = lira(report, "student", "all")
        lines.append(row(f"{name} ({seconds:.0f} s, load {load:.1f})", report, "student")
                     + f" teacher {100 * report['utility']['teacher']['test_accuracy']:.1f}%, TPR@1% "
                     f"{a['tpr_at_fpr'].get('0.01')}")
        print(lines[-1], flush=True)
    if args.combos == list(COMBOS):  # a subset would drop the other rows from the page
        publish(args, "knobs.md", "knobs", "\n".join(lines))


if __name__ == "__main__":
    main()
