"""Load test of ``distillguard serve``: an async HTTP client against the running server on localhost.

Usage: python benchmarks/bench_serve.py [--deploy DIR] [--requests 1000] [--rows 1]
                                        [--concurrency 1,16,64] [--no-docs]

Starts ``distillguard serve`` (one uvicorn worker, 127.0.0.1, a free port, a budget large
enough not to bind) in a subprocess; without ``--deploy`` it first builds a bundle with a
small purchase-synth run (100 features, 10 classes, shadows off: the audit is not what is
measured). For each concurrency, ``--requests`` POST /predict requests of ``--rows`` rows
each go out from that many concurrent httpx.AsyncClient workers. Every answer is compared
with ``load_bundle(DIR).predict_released`` (``predict_proba`` in the bundle's release form)
on the same rows: the outputs must be identical and no answer may be a 5xx (exit 1
otherwise). Latency is measured at the client, from send to parsed answer, on connections
opened before the clock starts (keep-alive, as behind a proxy), and by the server itself
(its /metrics: request in to response out; each level gets a fresh server). Loopback only;
the loops are bounded by ``--requests``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from distillguard import load_bundle
from distillguard.serve.server import start_local, stop_local
from results_page import add_docs_flag, publish

SPEC = """[run]
name = "bench-serve"
[data]
builtin = "purchase-synth"
[data.sizes]
members = 500
nonmembers = 500
transfer = 2000
test = 500
[data.synth]
features = 100
classes = 10
[audit]
shadows = 0
"""


def build_bundle(folder: Path) -> Path:
    from distillguard import run

    (folder / "spec.toml").write_text(SPEC)
    return run(folder / "spec.toml", run_dir=folder / "run").run_dir / "deploy"


def make_requests(deploy: Path, n: int, rows: int, seed: int = 0) -> tuple[list[dict], list[list]]:
    """Request bodies (rows drawn around the bundle's scaler mean) and the answers the bundle gives."""
    bundle = load_bundle(deploy)
    prep = bundle.config_["preprocessing"]
    mean, scale = np.asarray(prep["mean"]), np.asarray(prep["scale"])
    gen = np.random.default_rng(seed)
    bodies, expected = [], []
    for _ in range(n):
        X = (mean + gen.normal(size=(rows, len(mean))) * scale).astype(np.float32)
        bodies.append({"rows": [dict(zip(bundle.feature_names_, map(float, r), strict=True)) for r in X]})
        expected.append(bundle.predict_released(X))
    return bodies, expected


async def load(url: str, bodies: list[dict], expected: list[list], concurrency: int) -> dict:
    latencies, statuses, mismatches = [], {}, 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal mismatches
        while not queue.empty():
            i = queue.get_nowait()
            start = time.perf_counter()
            response = await client.post("/predict", json=bodies[i])
            answer = response.json()
            latencies.append(time.perf_counter() - start)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            mismatches += response.status_code == 200 and answer["predictions"] != expected[i]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        await asyncio.gather(*(client.get("/health") for _ in range(concurrency)))  # open the connections first
        load_before, start = os.getloadavg()[0], time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    lat = 1000 * np.asarray(latencies)
    return {"concurrency": concurrency, "requests": len(bodies), "seconds": seconds, "rps": len(bodies) / seconds,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "statuses": statuses,
            "mismatches": mismatches, "load": (load_before, os.getloadavg()[0])}


def measure(deploy: Path, log: Path, bodies: list[dict], expected: list[list], concurrency: int) -> dict:
    """One level on a fresh server, so its /metrics (server-side latency) covers this level only."""
    process, url = start_local(deploy, log, "--query-budget", str(10**9), "--allow-failed-gate")
    try:
        result = asyncio.run(load(url, bodies, expected, concurrency))
        result["server"] = httpx.get(url + "/metrics", timeout=30).json()["latency_ms"]
    finally:
        stop_local(process)
    return result


def table(results: list[dict], rows: int, output: str) -> str:
    lines = [f"| concurrent clients | requests ({rows} row{'s' if rows > 1 else ''} each) | throughput | p50 latency | "
             "p99 latency | server p50 / p99 | 5xx | outputs ≠ bundle | load average (start → end) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        five = sum(n for status, n in r["statuses"].items() if status >= 500)
        lines.append(f"| {r['concurrency']} | {r['requests']} | {r['rps']:.0f} req/s ({r['rps'] * rows:.0f} rows/s) | "
                     f"{r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['server']['p50']:.1f} / {r['server']['p99']:.1f} ms | "
                     f"{five} | {r['mismatches']} | "
                     f"{r['load'][0]:.1f} → {r['load'][1]:.1f} |")
    return "\n".join(lines) + f"\n\nRelease form served and compared: `{output}`."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploy", type=Path, help="a deploy folder (default: build one with a small run)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per concurrency level")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--concurrency", default="1,16,64")
    add_docs_flag(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        deploy = args.deploy or build_bundle(Path(scratch))
        bodies, expected = make_requests(deploy, args.requests, args.rows)
        results = [measure(deploy, Path(scratch) / f"server{c}.log", bodies, expected, int(c))
                   for c in args.concurrency.split(",")]
        output = load_bundle(deploy).release_["output"]
    text = table(results, args.rows, output)
    print(f"{os.cpu_count()} CPUs; one uvicorn worker, torch 1 thread per request\n\n{text}")
    bad = sum(r["mismatches"] + sum(n for s, n in r["statuses"].items() if s != 200) for r in results)
    if bad:
        print(f"FAILED: {bad} answers were not a 200 identical to the bundle's", file=sys.stderr)
        return 1
    publish(args, "serve.md", f"serve-{args.rows}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
