"""Peak memory of the label and distill stages against the transfer set's size, and 2 processes vs 1.

Usage: python benchmarks/bench_label_scale.py [--sizes 10000 100000 1000000] [--features 32]
                                              [--shard-rows 65536] [--no-torchrun] [--no-distill] [--keep DIR]

Writes Parquet files of a 10-class Gaussian mixture (600 members, 600 nonmembers, test
1,000; transfer sets of each size, written in chunks so this script stays small too),
trains the teacher once per size (cheap: 600 members), then runs ``distillguard label``
in a fresh process and reads that process's peak RSS (``ru_maxrss``). The label stage
reads, leak-guards and labels one shard of ``--shard-rows`` records at a time, so its
peak should not grow with the transfer set. Then ``distillguard distill`` runs in a fresh
process too (a small student, one epoch: the point is memory, not the model): it joins
the label shards with the transfer file shard by shard into blocks on disk and trains
from at most two blocks at a time, so its peak should not grow either. The largest size
is then labelled again
under ``torchrun --nproc_per_node=2`` (gloo), each rank guarding and labelling every
other shard. Not a test: times depend on the machine and on what else it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from results_page import add_docs_flag, publish

N_CLASSES = 10

# Runs one stage through the public API in this process and prints its peak RSS (KiB on Linux).
PROBE = """
import json, resource, sys, time
from distillguard import api
started = time.perf_counter()
getattr(api, sys.argv[1])(sys.argv[2], run_dir=sys.argv[3], device="cpu")
import torch.distributed as dist
rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
print(json.dumps({"rank": rank, "seconds": time.perf_counter() - started,
                  "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _write_mixture(path: Path, rows: int, *, features: int, labeled: bool, seed: int, centers: np.ndarray) -> None:
    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(features)]
    writer = None
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        y = rng.integers(0, N_CLASSES, n)
        X = (centers[y] + rng.normal(size=(n, features))).astype(np.float32)
        columns = {name: X[:, i] for i, name in enumerate(names)}
        if labeled:
            columns["y"] = y
        table = pa.table(columns)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def _spec(folder: Path, transfer: Path, shard_rows: int) -> Path:
    spec = folder / f"{transfer.stem}.toml"
    spec.write_text(f"""
[run]
name = "{transfer.stem}"
shard_rows = {shard_rows}
[data]
format = "parquet"
members = "members.parquet"
nonmembers = "nonmembers.parquet"
transfer = "{transfer.name}"
test = "test.parquet"
[teacher]
hidden = [256, 256]
epochs = 10
[student]
hidden = [64]
epochs = 1
batch_size = 1024
[audit]
shadows = 0
""")
    return spec


def _probe(stage: str, spec: Path, run_dir: Path, *, nproc: int = 1, threads: int | None = None) -> list[dict]:
    threads = threads or max(1, (os.cpu_count() or 2) // nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if nproc == 1:
        command = [sys.executable, "-c", PROBE, stage, str(spec), str(run_dir)]
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        probe = run_dir.parent / "probe.py"
        probe.write_text(PROBE)
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                   "--master_addr=127.0.0.1", f"--master_port={port}", str(probe), stage, str(spec), str(run_dir)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(command[:4])}… failed:\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _fresh_label_run(run_dir: Path, suffix: str) -> Path:
    """A copy of ``run_dir`` with its teacher and without its label stage."""
    copy = run_dir.with_name(f"{run_dir.name}_{suffix}")
    shutil.copytree(run_dir / "teacher", copy / "teacher")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for stage in ("label", "distill"):
        manifest["stages"].pop(stage, None)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--shard-rows", type=int, default=65_536)
    parser.add_argument("--no-torchrun", action="store_true", help="skip the 2-process run")
    parser.add_argument("--no-distill", action="store_true", help="skip the distill stage")
    parser.add_argument("--keep", type=Path, help="keep the data and runs in this folder")
    add_docs_flag(parser)
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="dg-label-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    centers = np.random.default_rng(0).normal(scale=1.5, size=(N_CLASSES, args.features))
    for seed, (name, rows) in enumerate((("members", 600), ("nonmembers", 600), ("test", 1000)), start=1):
        _write_mixture(folder / f"{name}.parquet", rows, features=args.features, labeled=True, seed=seed, centers=centers)
    print(f"label stage, {args.features} features, shards of {args.shard_rows} rows; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'transfer rows':>14} | {'file MiB':>8} | {'label s':>8} | {'peak RSS MiB':>12} | "
          f"{'distill s':>9} | {'peak RSS MiB':>12}")
    last = None
    table = (["| transfer rows | file | label stage | peak RSS |", "|---|---|---|---|"] if args.no_distill else
             ["| transfer rows | file | label stage | its peak RSS | distill stage | its peak RSS |",
              "|---|---|---|---|---|---|"])
    for rows in args.sizes:
        transfer = folder / f"transfer_{rows}.parquet"
        _write_mixture(transfer, rows, features=args.features, labeled=False, seed=100 + rows, centers=centers)
        spec = _spec(folder, transfer, args.shard_rows)
        run_dir = folder / f"run_{rows}"
        _probe("train_teacher", spec, run_dir)
        result = _probe("label", spec, run_dir)[0]
        cells = [f"{rows:,}", f"{transfer.stat().st_size / 2**20:.1f} MiB", f"{result['seconds']:.1f} s",
                 f"{result['max_rss_mib']:.0f} MiB"]
        line = (f"{rows:>14,} | {transfer.stat().st_size / 2**20:>8.1f} | {result['seconds']:>8.1f} | "
                f"{result['max_rss_mib']:>12.0f}")
        if not args.no_distill:
            student = _probe("distill", spec, run_dir)[0]
            line += f" | {student['seconds']:>9.1f} | {student['max_rss_mib']:>12.0f}"
            cells += [f"{student['seconds']:.1f} s", f"{student['max_rss_mib']:.0f} MiB"]
        table.append("| " + " | ".join(cells) + " |")
        print(line, flush=True)
        last = (rows, spec, run_dir, result)
    if not args.no_torchrun and last is not None:
        rows, spec, run_dir, single = last
        one_thread = _probe("label", spec, _fresh_label_run(run_dir, "1thread"), threads=1)[0]
        two_dir = _fresh_label_run(run_dir, "2proc")
        started = time.perf_counter()
        ranks = _probe("label", spec, two_dir, nproc=2)
        wall = time.perf_counter() - started
        stage = max(r["seconds"] for r in ranks)
        peaks = ", ".join(f"{r['max_rss_mib']:.0f}" for r in sorted(ranks, key=lambda r: r["rank"]))
        print(f"\n{rows:,} rows, label stage: 1 process x 2 threads {single['seconds']:.1f} s, 1 process x 1 thread "
              f"{one_thread['seconds']:.1f} s, 2 processes x 1 thread (torchrun, gloo) {stage:.1f} s (wall with process "
              f"start-up {wall:.1f} s); speed-up of 2 processes over 1: {single['seconds'] / stage:.2f}x "
              f"(over 1 single-threaded process: {one_thread['seconds'] / stage:.2f}x); peak RSS per rank {peaks} MiB")
        same = all(pq.read_table(run_dir / "softlabels" / n).equals(pq.read_table(two_dir / "softlabels" / n))
                   for n in json.loads((run_dir / "softlabels" / "meta.json").read_text())["shards"])
        print(f"shards identical to the single-process run: {same}")
    publish(args, "scale.md", "label-scale" if args.no_distill else "label-distill-scale", "\n".join(table))
    if args.keep is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
