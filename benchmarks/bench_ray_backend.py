"""One spec run twice, shadows trained locally and as Ray tasks: audit wall time and equality.

Usage: python benchmarks/bench_ray_backend.py [--spec SPEC] [--per-task N] [--address ADDR]
The Ray run starts (and stops) its own Ray instance unless --address names a cluster, so
its audit time includes Ray's start-up. Prints markdown (written into docs/results/scale.md). Not a test:
numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

import distillguard
from distillguard.config import load_spec
from distillguard.tuning.space import override
from results_page import add_docs_flag, publish


def _run(spec, run_dir: Path) -> tuple[float, float]:
    """(whole run, audit stage) seconds."""
    started = time.perf_counter()
    distillguard.run(spec, run_dir=run_dir)
    total = time.perf_counter() - started
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return total, manifest["stages"]["audit"]["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=None, help="spec file (default: the built-in demo)")
    parser.add_argument("--per-task", type=int, default=4, help="[audit] ray_shadows_per_task")
    parser.add_argument("--address", default=None, help="[audit] ray_address (default: start a local instance)")
    add_docs_flag(parser)
    args = parser.parse_args()
    spec = load_spec(args.spec)
    on_ray = override(spec, {"audit": {"backend": "ray", "ray_shadows_per_task": args.per_task,
                                       "ray_address": args.address}})
    folder = Path(tempfile.mkdtemp(prefix="dg-bench-ray-"))
    times = {"local": _run(spec, folder / "local"), "ray": _run(on_ray, folder / "ray")}
    scores = [pq.read_table(folder / name / "audit" / "scores.parquet").column("score").to_numpy() for name in times]
    metrics = [json.loads((folder / name / "audit" / "metrics.json").read_text()) for name in times]
    print(f"torch threads: {torch.get_num_threads()}; {spec.audit.shadows} shadows, "
          f"{-(-spec.audit.shadows // args.per_task)} Ray tasks of ≤ {args.per_task}")
    table = "\n".join(["| backend | audit stage (s) | whole run (s) |", "|---|---|---|"]
                      + [f"| {name} | {audit:.1f} | {total:.1f} |" for name, (total, audit) in times.items()])
    print(table)
    print(f"scores.parquet equal: {np.array_equal(scores[0], scores[1])} (max |Δ| "
          f"{np.abs(scores[0] - scores[1]).max():.3g}); metrics.json equal: {metrics[0] == metrics[1]}")
    if args.spec is None:  # the page documents the built-in demo
        publish(args, "scale.md", "ray-backend", table)


if __name__ == "__main__":
    main()
