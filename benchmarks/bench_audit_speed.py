"""The built-in demo's audit stage, timed three ways in one run: before, after, and re-audited.

Usage: python benchmarks/bench_audit_speed.py [--threads N] [--run-dir DIR] [--no-docs]

Runs the built-in demo once (teacher, label, distill, audit), then times the audit
stage again on that run folder:

* exact: the shadow trainer before issue 22 (``train.batched.FAST = False``: the loop's
  single-tensor AdamW on slices, one loss call per model), shadow teachers trained;
* fast: the default trainer (fused AdamW, vmapped loss), shadow teachers trained;
* re-audit: the fast audit again, as after a change of student knobs: the shadow
  teachers come from ``teacher/shadow-teachers/`` (audit/shadow_cache.py).

Before each timed audit the audit folder and its checkpoints are removed (so the stage
reruns from scratch) and, for the first two, the shadow-teacher cache too. The load average is printed beside each time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from distillguard import pipeline
from distillguard.train import batched
from results_page import add_docs_flag, publish


def timed_audit(run_dir: Path, *, fast: bool, keep_cache: bool) -> tuple[float, float, dict]:
    shutil.rmtree(run_dir / "audit", ignore_errors=True)
    shutil.rmtree(run_dir / ".checkpoints" / "audit", ignore_errors=True)  # no resuming a killed earlier audit
    if not keep_cache:
        shutil.rmtree(run_dir / "teacher" / "shadow-teachers", ignore_errors=True)
    batched.FAST = fast
    load = os.getloadavg()[0]
    try:
        started = time.perf_counter()
        pipeline.audit(None, run_dir=run_dir)
        seconds = time.perf_counter() - started
    finally:
        batched.FAST = True
    metrics = json.loads((run_dir / "audit" / "metrics.json").read_text())
    return seconds, (load + os.getloadavg()[0]) / 2, metrics


def lira(metrics: dict, target: str) -> str:
    row = next(a for a in metrics["attacks"] if a["attack"] == "lira_online" and a["target"] == target
               and a["population"] == "all")
    return f"{row['auc']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--run-dir", default=None, help="a finished demo run to reuse (default: run it in a temp folder)")
    add_docs_flag(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="dg-audit-speed-"))
    if not (run_dir / "report.json").exists():
        pipeline.run(None, run_dir=run_dir)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; demo run in {run_dir}")
    rows = [("exact (before: sliced AdamW, per-model loss)", *timed_audit(run_dir, fast=False, keep_cache=False)),
            ("fast (fused AdamW, vmapped loss)", *timed_audit(run_dir, fast=True, keep_cache=False)),
            ("fast, re-audit (shadow teachers from the cache)", *timed_audit(run_dir, fast=True, keep_cache=True))]
    table = ["| demo audit stage | seconds | vs before | teacher LiRA AUC | student LiRA AUC | load |",
             "|---|---|---|---|---|---|"]
    for name, seconds, load, metrics in rows:
        line = (f"| {name} | {seconds:.1f} | {rows[0][1] / seconds:.2f}× | {lira(metrics, 'teacher')} | "
                f"{lira(metrics, 'student')} | {load:.1f} |")
        print(line, flush=True)
        table.append(line)
    publish(args, "shadows.md", "demo-audit", "\n".join(table))


if __name__ == "__main__":
    main()
