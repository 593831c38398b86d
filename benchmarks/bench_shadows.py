"""Shadow-model training, one model at a time (``loop.fit``) versus all at once (``fit_many``).

Usage: python benchmarks/bench_shadows.py [--shadows 64] [--threads N] [--group-size G]
                                          [--workload teacher|student|small|all] [--loop-sample K]
                                          [--no-exact]

Purchase-like data (600 binary features standardized, 100 classes) and shadow recipes
like the audit's (30 epochs, batch 64, 540 training rows, checkpoint selection on 60
held-out rows): a teacher-like MLP [256, 256] with cross-entropy, a student-like MLP [128]
distilled (KD, T=2) from stored logits, and a small MLP [32] where per-step overhead, not
arithmetic, dominates. Three paths use the same seeds: the loop, the exact batched path
(``batched.FAST = False``: the loop's single-tensor AdamW on slices and one loss call per
model, the path before issue 22, bit for bit the loop) and the fast one (fused AdamW,
vmapped loss; the default). The table shows the largest parameter difference between
the loop and the fast path, and "% of ceiling": the fast path's GEMM rate over the large-
GEMM rate, measured before and after each workload (the mean of the two), so a load
change during the run shifts both alike. Not a test: times depend on the machine
and on whatever else it runs (a loaded machine slows the loop's many small multi-threaded
ops far more than the batched ones): compare the columns of one run only.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distillguard.models.classifiers import architecture
from distillguard.train import batched as batched_module
from distillguard.train.batched import fit_many
from distillguard.train.kd import kd_loss
from distillguard.train.loop import Recipe, accuracy
from results_page import add_docs_flag, publish

N_FEATURES, N_CLASSES = 600, 100


@dataclass(frozen=True)
class Workload:
    """One shadow recipe: architecture, loss, metric, and how many rows each model sees."""

    name: str
    hidden: list[int]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric: Callable[[torch.Tensor, torch.Tensor], float]
    soft_targets: bool
    train_rows: int
    val_rows: int
    recipe: Recipe


def _kd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return kd_loss(student, teacher, temperature=2.0)


WORKLOADS = {
    "teacher": Workload("teacher MLP [256,256], CE", [256, 256], F.cross_entropy, accuracy, False, 540, 60,
                        Recipe(epochs=30, batch_size=64, lr=1e-3, weight_decay=0.0)),
    "student": Workload("student MLP [128], KD T=2", [128], _kd, lambda z, t: -float(_kd(z, t)), True, 540, 60,
                        Recipe(epochs=30, batch_size=64, lr=1e-3, weight_decay=1e-4)),
    # Overhead-bound: a step's arithmetic is tiny, so the loop's per-step Python dominates.
    "small": Workload("small MLP [32], CE", [32], F.cross_entropy, accuracy, False, 540, 60,
                      Recipe(epochs=30, batch_size=64, lr=1e-3, weight_decay=0.0)),
}


def purchase_like(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, 600) standardized binary features, (n,) labels of the nearest of 100 prototypes,
    (n, 100) teacher-like logits (for distillation)."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(N_CLASSES, N_FEATURES, generator=g) < 0.2).float()
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    flip = torch.rand(n, N_FEATURES, generator=g) < 0.2
    X = torch.where(flip, 1 - prototypes[y], prototypes[y])
    logits = 0.05 * (2 * X - 1) @ (2 * prototypes - 1).T
    X = (X - X.mean(0)) / X.std(0).clamp_min(1e-6)
    return X, y, logits


def shadow_rows(n_pool: int, shadows: int, *, train: int, val: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, train) and (S, val) disjoint random rows of the pool, one pair per shadow."""
    g = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(n_pool, generator=g) for _ in range(shadows)])
    return perms[:, :train], perms[:, train:train + val]


def timed(run: Callable[[], list[dict[str, torch.Tensor]]]) -> tuple[list[dict[str, torch.Tensor]], float]:
    started = time.perf_counter()
    out = run()
    return out, time.perf_counter() - started


def sgemm_gflops() -> float:
    """This machine's large single-precision GEMM rate: the arithmetic ceiling of any path."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    started = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048**3 / (time.perf_counter() - started) / 1e9


def training_flops(work: Workload, *, shadows: int) -> float:
    """Multiply-add work of the shadows' GEMMs: forward 2·P, backward 4·P per row (P =
    weights), plus one forward over the validation rows per epoch. Independent of the path."""
    sizes = [N_FEATURES, *work.hidden, N_CLASSES]
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    per_epoch = 6 * weights * work.train_rows + 2 * weights * work.val_rows
    return per_epoch * work.recipe.epochs * shadows


def max_abs_diff(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> float:
    return max(float((x[k] - y[k]).abs().max()) for x, y in zip(a, b) for k in x)


def bench(work: Workload, *, shadows: int, loop_sample: int, exact: bool) -> dict[str, float]:
    """Train ``shadows`` models batched (fast, and exact if asked) and ``loop_sample`` of them looped; seconds."""
    X, y, logits = purchase_like(1200, seed=0)
    targets = logits if work.soft_targets else y
    rows, val_rows = shadow_rows(len(X), shadows, train=work.train_rows, val=work.val_rows, seed=1)
    arch = architecture(kind="mlp", input_shape=(N_FEATURES,), n_classes=N_CLASSES, hidden=work.hidden, channels=[])
    seeds = [1000 + s for s in range(shadows)]
    common = dict(loss_fn=work.loss_fn, recipe=work.recipe, metric=work.metric)
    k = min(loop_sample, shadows)
    looped, t_loop = timed(lambda: fit_many(arch, X, targets, rows=rows[:k], val_rows=val_rows[:k], seeds=seeds[:k],
                                            batched=False, **common))
    def batched(fast: bool) -> list[dict[str, torch.Tensor]]:
        batched_module.FAST = fast
        try:
            return fit_many(arch, X, targets, rows=rows, val_rows=val_rows, seeds=seeds, batched=True, **common)
        finally:
            batched_module.FAST = True

    t_exact = timed(lambda: batched(False))[1] if exact else float("nan")
    together, t_batch = timed(lambda: batched(True))
    return {"loop": t_loop * shadows / k, "exact": t_exact, "batched": t_batch,
            "diff": max_abs_diff(looped, together[:k]), "extrapolated": k < shadows,
            "flops": training_flops(work, shadows=shadows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shadows", type=int, default=64, help="models per workload (default 64)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--group-size", type=int, default=None, help="models stacked together (default: fit_many's)")
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--loop-sample", type=int, default=None,
                        help="time only this many looped models and scale up (default: all)")
    parser.add_argument("--no-exact", action="store_true", help="skip the exact batched path (the pre-fused one)")
    add_docs_flag(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.group_size:
        batched_module.GROUP_SIZE = args.group_size
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; group size {batched_module.GROUP_SIZE or 'auto'}")
    print("'ceiling' = looped time / (GEMM work / the large-GEMM rate): no path can beat its arithmetic at that "
          "rate; '% ceil' = fast batched GEMM rate / large-GEMM rate (the fraction of that bound reached)")
    print(f"{'workload':<28} {'S':>4} {'looped s':>9} {'exact s':>8} {'fast s':>7} {'speed-up':>9} "
          f"{'ceiling':>8} {'GEMM GF/s':>9} {'fast GF/s':>9} {'% ceil':>6} {'max |Δθ|':>9} {'load':>5}")
    table = ["| workload | looped | batched, exact (before) | batched, fast | speed-up | ceiling | % of ceiling "
             "| GPU | max \\|Δθ\\| | load |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        work = WORKLOADS[name]
        before = sgemm_gflops()
        r = bench(work, shadows=args.shadows, loop_sample=args.loop_sample or args.shadows, exact=not args.no_exact)
        peak = (before + sgemm_gflops()) / 2
        loop = f"{r['loop']:.1f}{'*' if r['extrapolated'] else ''}"
        ceiling, share = r["loop"] / (r["flops"] / 1e9 / peak), r["flops"] / 1e9 / r["batched"] / peak
        load = os.getloadavg()[0]
        print(f"{work.name:<28} {args.shadows:>4} {loop:>9} {r['exact']:>8.1f} {r['batched']:>7.1f} "
              f"{r['loop'] / r['batched']:>8.1f}x {ceiling:>7.1f}x {peak:>9.0f} {r['flops'] / 1e9 / r['batched']:>9.0f} "
              f"{100 * share:>5.0f}% {r['diff']:>9.1e} {load:>5.1f}", flush=True)
        table.append(f"| {work.name} | {loop} s | {r['exact']:.1f} s | {r['batched']:.1f} s | "
                     f"**{r['loop'] / r['batched']:.1f}×** | {ceiling:.1f}× | **{100 * share:.0f} %** | unmeasured | "
                     f"{r['diff']:.1g} | {load:.1f} |")
    if args.workload == "all" and args.shadows == 64:  # the page documents the default workloads
        publish(args, "shadows.md", "shadows", "\n".join(table))
    if args.loop_sample and args.loop_sample < args.shadows:
        print(f"* looped time scaled up from {args.loop_sample} models")


if __name__ == "__main__":
    main()
