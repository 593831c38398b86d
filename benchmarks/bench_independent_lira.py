"""The report's "strongest" attack against reference LiRA on independently seeded shadows.

Usage: python benchmarks/bench_independent_lira.py [--spec SPEC] [--run-dir DIR] [--existing] [--seeds 1 2] [--no-docs]

Runs the pipeline (or reads a finished run with ``--existing``), then, for each extra
seed, trains a fresh set of shadow pipelines with the spec's recipe but other seeds
(other membership halves, other initialisations) on the same audit pool, in both shadow
recipes ("replay": checkpoint selection as the real models; "plain": last epoch; one
teacher training for both), and attacks the
real teacher and student with LiRA written from the reference formulas (Carlini et al.
2022; tensorflow/privacy ``research/mi_lira_2021/plot.py``: medians, one fixed σ; no
distillguard attack code). The same reference LiRA on the run's own persisted shadows
(``audit/shadow_outputs.npz``) is shown too. Prints markdown and writes it into
docs/results/independent-lira.md (``--no-docs``: print only). Not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
from sklearn.metrics import roc_curve

import distillguard
from distillguard.audit.placement import train_shadows
from distillguard.audit.shadows import build_pool
from distillguard.config import load_spec
from distillguard.tuning.space import override
from distillguard.data import load_members, load_role, shard_numbers
from distillguard.data.softlabel_shards import read_query_ids
from distillguard.runs import read_json
from results_page import add_docs_flag, publish

LEVELS = (0.01, 0.005, "lowest", 0.0)


def phi(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y − log(1 − p_y), stably."""
    z = logits - logits.max(axis=-1, keepdims=True)
    y = np.broadcast_to(labels, z.shape[:-1])[..., None]
    z_y = np.take_along_axis(z, y, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, y, -np.inf, axis=-1)
    return z_y - np.log(np.exp(others).sum(axis=-1))


def reference_lira(keep: np.ndarray, shadow_phi: np.ndarray, target_phi: np.ndarray, *, online: bool) -> np.ndarray:
    """Reference LiRA with fix_variance (online: σ from the in-values; offline: from the out-values, one-sided)."""
    n = keep.shape[1]
    dat_in = [shadow_phi[keep[:, j], j] for j in range(n)]
    dat_out = [shadow_phi[~keep[:, j], j] for j in range(n)]
    dat_in = np.array([x[:min(map(len, dat_in))] for x in dat_in])
    dat_out = np.array([x[:min(map(len, dat_out))] for x in dat_out])
    mean_in, mean_out = np.median(dat_in, 1), np.median(dat_out, 1)
    if online:
        std = np.std(dat_in)
        return scipy.stats.norm.logpdf(target_phi, mean_in, std) - scipy.stats.norm.logpdf(target_phi, mean_out, std)
    return -scipy.stats.norm.logsf(target_phi, mean_out, np.std(dat_out))


def tprs(scores: np.ndarray, is_member: np.ndarray) -> list[float | None]:
    f, t, _ = roc_curve(is_member, scores, drop_intermediate=False)
    n_out = int((~is_member).sum())
    out = []
    for level in LEVELS:
        x = 1.0 / n_out if level == "lowest" else level
        out.append(float(t[f <= x + 1e-9].max()) if x == 0 or x * n_out >= 1 - 1e-9 else None)
    return out


def independent_shadows(spec, run_dir: Path, seed: int) -> dict:
    """Shadows with the spec's recipe and other seeds, on the run's audit pool; logits per target."""
    schema, members = load_members(spec.data, seed=spec.run.seed)
    nonmembers = load_role(spec.data, "nonmembers", schema=schema, seed=spec.run.seed)
    test = load_role(spec.data, "test", schema=schema, seed=spec.run.seed)
    trained = np.asarray(read_json(run_dir / "teacher" / "split.json")["train_ids"], dtype=np.int64)
    pool = build_pool(members.subset(np.flatnonzero(np.isin(members.ids, trained))), nonmembers, seed=spec.run.seed)
    transfer = load_role(spec.data, "transfer", schema=schema, seed=spec.run.seed)
    transfer = transfer.subset(np.flatnonzero(np.isin(transfer.ids, read_query_ids(run_dir / "softlabels"))))
    other = override(spec, {"run": {"seed": seed}, "audit": {"canaries": 0, "shadow_recipe": "auto"}})
    shadows = train_shadows(other, schema=schema, pool=pool, transfer_X=transfer.X, population_X=test.X,
                            transfer_blocks=shard_numbers(transfer.ids, spec.run.shard_rows))
    variants = {"replay": shadows.logits, "plain": shadows.plain or {}}  # one teacher training gives both
    return {"membership": shadows.membership, "ids": pool.example_ids,
            **{recipe: {target: logits[target].pool for target in logits} for recipe, logits in variants.items()}}


def table(run_dir: Path, seeds: list[int], spec) -> str:
    report = json.loads((run_dir / "report.json").read_text())
    scores = pd.read_parquet(run_dir / "audit" / "scores.parquet")
    with np.load(run_dir / "audit" / "shadow_outputs.npz", allow_pickle=False) as data:
        own = {key: data[key] for key in data.files}
    labels, is_member, ids = own["pool_labels"], own["pool_is_member"], list(own["pool_example_ids"])
    n_out = int((~is_member).sum())
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [f"{int(is_member.sum())} members, {n_out} non-members; lowest resolvable FPR 1/{n_out} = "
             f"{100 / n_out:.2f}%", "",
             "| target | attack | shadows | TPR@1% | TPR@0.5% | TPR@lowest | TPR@0 FP |", "|---|---|---|---|---|---|---|"]
    recipes = {t: str(own.get(f"{t}_shadow_recipe", "replay")) for t in ("teacher", "student")}
    sets = [("own (audit/shadow_outputs.npz)", own["shadow_membership"],
             {t: own[f"{t}_shadow_pool_logits"] for t in ("teacher", "student")})]
    for seed in seeds:
        extra = independent_shadows(spec, run_dir, seed)
        assert extra["ids"] == ids
        sets += [(f"independent {recipe}, seed {seed}", extra["membership"], extra[recipe])
                 for recipe in ("replay", "plain") if extra[recipe]]
    for target in ("student", "teacher"):
        mine = scores[(scores.attack == "strongest") & (scores.target == target) & ~scores.is_canary]
        assert list(mine.example_id) == ids
        chosen = next(a["configuration"] for a in report["attacks"] if a["attack"] == "strongest"
                      and a["target"] == target and a["population"] == "all")
        name = f"strongest ({chosen['attack']}, {', '.join(f'{k}={v}' for k, v in chosen['params'].items())})"
        lines.append(f"| {target} | {name} | own ({recipes[target]}) | " + " | ".join(map(pct, tprs(mine.score.to_numpy(), is_member))) + " |")
        target_phi = phi(own[f"{target}_pool_logits"], labels)
        for label, keep, logits in sets:
            shadow_phi = phi(logits[target], labels)
            for online in (True, False):
                ref = reference_lira(keep, shadow_phi, target_phi, online=online)
                lines.append(f"| {target} | reference LiRA {'online' if online else 'offline'}, fixed σ | {label} | "
                             + " | ".join(map(pct, tprs(ref, is_member))) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=None, help="spec file (default: the built-in demo)")
    parser.add_argument("--run-dir", default=None, help="run folder (default: a fresh temp folder)")
    parser.add_argument("--existing", action="store_true", help="use the finished run in --run-dir")
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2], help="seeds of the independent shadow sets")
    add_docs_flag(parser)
    args = parser.parse_args()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="dg-bench-"))
    if not args.existing:
        shutil.rmtree(run_dir, ignore_errors=True)
        distillguard.run(args.spec, run_dir=run_dir)
    spec = load_spec(run_dir / "spec.toml")
    text = table(run_dir, args.seeds, spec)
    print(text)
    if args.spec is None:
        publish(args, "independent-lira.md", "independent-lira", text)


if __name__ == "__main__":
    main()
