"""The language-model example, timed: per-stage wall time, utility, exposure and PII tables.

Usage: python benchmarks/bench_lm_demo.py [--spec examples/pii-corpus.toml] [--run-dir DIR] [--existing]
With --existing, only prints the tables of a finished run in DIR. Prints markdown and writes it into
docs/results/lm-demo.md (for examples/news-pii.toml: docs/results/lm-news.md). Not a test: numbers
depend on the machine (and on how busy its cores are).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import distillguard
from distillguard.report.model_card import exposure_summary
from results_page import add_docs_flag, publish


def tables(run_dir: Path) -> str:
    report = json.loads((run_dir / "report.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    lines = ["| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {record['seconds']:.0f} |" for name, record in manifest["stages"].items()]
    lines.append(f"| total | {sum(r['seconds'] for r in manifest['stages'].values()):.0f} |")
    u = report["utility"]
    lines += ["", "| model | test perplexity |", "|---|---|"]
    lines += [f"| {name} | {u[name]['test_perplexity']:.2f} |" for name in ("teacher", "student", "reference") if name in u]
    lines.append(f"| student / teacher | {u['perplexity_ratio']:.3f} |")
    lines += ["", "| repetitions | model | canaries | mean exposure (bits) | baseline (reference model) | max |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {e['repetitions']} | {e['target']} | {e['n_canaries']} | {e['mean_exposure_bits']:.2f} | "
              f"{e['mean_baseline_bits']:.2f} | {e['max_bits']:.2f} |" for e in exposure_summary(report["probes"])]
    worst = report.get("canary_exposure")
    if worst:
        lines += ["", f"| canary | repetitions | {worst['target']} exposure (bits) | baseline (reference model) | "
                      "above baseline | length control |", "|---|---|---|---|---|---|"]
        control = {p["canary_id"]: p.get("length_control", "none") for p in report["probes"]
                   if p["probe"] == "exposure" and p["target"] == worst["target"]}
        lines += [f"| {r['canary_id']} | {r['repetitions']} | {r['exposure_bits']:.2f} | {r['baseline_bits']:.2f} | "
                  f"{r['excess_bits']:+.2f} | {control[r['canary_id']]} |" for r in worst["canaries"]]
        lines.append(f"\nWorst canary: {worst['worst_canary_id']} ({worst['worst_excess_bits']:+.2f} bits above its baseline)")
    lines += ["", "| probe | target | rate | n |", "|---|---|---|---|"]
    for p in report["probes"]:
        if p["probe"] == "exposure":
            continue
        rate = p.get("exact_match_rate", p.get("extraction_rate", p.get("rate")))
        lines.append(f"| {p['probe']} | {p['target']} | {'n/a' if rate is None else f'{100 * rate:.1f}%'} | "
                     f"{p.get('n', p.get('n_generations'))} |")
    lines += ["", "| attack | target | AUC | AUC interval | TPR @ FPR ≤ 1% |", "|---|---|---|---|---|"]
    for a in report["attacks"]:
        tpr = a["tpr_at_fpr"].get("0.01")
        lines.append(f"| {a['attack']} | {a['target']} | {a['auc']:.3f} | {a['auc_ci'][0]:.3f}–{a['auc_ci'][1]:.3f} | "
                     f"{'n/a' if tpr is None else f'{100 * tpr:.1f}%'} |")
    gate = report["gate"]
    lines += ["", f"Gate: {'PASSED' if gate['passed'] else 'FAILED'}"]
    lines += [f"- {c['name']}: {c['value'] if c['value'] is None else round(c['value'], 3)} (max {c['threshold']}) "
              f"{'pass' if c['passed'] else 'FAIL'}" for c in gate["checks"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="examples/pii-corpus.toml")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--existing", action="store_true", help="print the tables of a finished run")
    add_docs_flag(parser)
    args = parser.parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="dg-lm-bench-"))
    if not args.existing:
        started = time.perf_counter()
        distillguard.run(args.spec, run_dir=run_dir)
        print(f"torch threads: {torch.get_num_threads()}; total wall time {time.perf_counter() - started:.0f} s\n")
    text = tables(run_dir)
    print(text)
    pages = {parser.get_default("spec"): ("lm-demo.md", "lm-demo"), "examples/news-pii.toml": ("lm-news.md", "lm-news")}
    if args.spec in pages:  # the pages document the shipped examples
        publish(args, *pages[args.spec], text)


if __name__ == "__main__":
    main()
