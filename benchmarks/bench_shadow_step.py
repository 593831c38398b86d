"""Where a batched shadow step's time goes, and how much of it the GEMMs alone would take.

Usage: python benchmarks/bench_shadow_step.py [--workload teacher|student|small|all] [--shadows 64]
                                              [--epochs 2] [--threads N] [--exact]

For bench_shadows.py's workloads, trains one stack of ``--shadows`` models for
``--epochs`` epochs with manual timers around each phase of ``fit_many``'s step (epoch
order, gathering the minibatch rows, forward, loss, backward, optimizer, validation),
then times the step's matrix products alone at the same shapes (forward, and the
backward's weight and input gradients, as ``baddbmm``/``bmm`` on preallocated tensors):
their rate over the large-GEMM rate is the share of bench_shadows.py's ceiling that even
an overhead-free path could reach at these sizes on this machine. Prints only.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bench_shadows import N_CLASSES, N_FEATURES, WORKLOADS, purchase_like, sgemm_gflops, shadow_rows, training_flops
from distillguard.models.classifiers import architecture, build_model
from distillguard.train import batched
from distillguard.train.batched import _epoch_rows
from distillguard.train.stacked import (FusedAdamW, SlicedAdamW, loss_vmappable, model_losses, predict_stacked,
                                        stack_models, summed_loss, take)


def phases(name: str, *, shadows: int, epochs: int, exact: bool) -> tuple[dict[str, float], float]:
    """Seconds per phase over ``epochs`` epochs of one stack, and the GEMM work done (FLOPs)."""
    w = WORKLOADS[name]
    X, y, logits = purchase_like(1200, seed=0)
    T = logits if w.soft_targets else y
    rows, val_rows = shadow_rows(len(X), shadows, train=w.train_rows, val=w.val_rows, seed=1)
    arch = architecture(kind="mlp", input_shape=(N_FEATURES,), n_classes=N_CLASSES, hidden=w.hidden, channels=[])
    stack = stack_models([build_model(arch, seed=s) for s in range(shadows)])
    optimizer = (SlicedAdamW if exact else FusedAdamW)(list(stack.params.values()), w.recipe)
    generators = [torch.Generator().manual_seed(s) for s in range(shadows)]
    vmapped = not exact and loss_vmappable(w.loss_fn, stack.forward(take(X, rows[:, :2])), take(T, rows[:, :2]))
    t = dict.fromkeys(("order", "gather", "forward", "loss", "backward", "optimizer", "validation"), 0.0)
    for _ in range(epochs):
        a = time.perf_counter()
        order = _epoch_rows(rows, generators, w.recipe)
        t["order"] += time.perf_counter() - a
        for index in order.split(w.recipe.batch_size, dim=1):
            a = time.perf_counter()
            xb, tb = take(X, index), take(T, index)
            b = time.perf_counter()
            optimizer.zero_grad()
            z = stack.forward(xb)
            c = time.perf_counter()
            loss = model_losses(w.loss_fn, z, tb).sum() if exact else summed_loss(w.loss_fn, z, tb, vmapped=vmapped)
            d = time.perf_counter()
            loss.backward()
            e = time.perf_counter()
            optimizer.step()
            f = time.perf_counter()
            for key, seconds in zip(("gather", "forward", "loss", "backward", "optimizer"), (b - a, c - b, d - c, e - d, f - e)):
                t[key] += seconds
        a = time.perf_counter()
        out = predict_stacked(stack, take(X, val_rows), shared=False)
        [w.metric(zz, tt) for zz, tt in zip(out.unbind(0), take(T, val_rows).unbind(0))]
        t["validation"] += time.perf_counter() - a
    return t, training_flops(w, shadows=shadows) / w.recipe.epochs * epochs


def gemms_alone(name: str, *, shadows: int, epochs: int) -> float:
    """Seconds the same epochs' products take as bare batched GEMMs (first layer: no input gradient)."""
    w = WORKLOADS[name]
    sizes = [N_FEATURES, *w.hidden, N_CLASSES]
    B, steps = w.recipe.batch_size, -(-w.train_rows // w.recipe.batch_size)
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        x, W, g = torch.randn(shadows, B, a), torch.randn(shadows, b, a), torch.randn(shadows, B, b)
        bias = torch.randn(shadows, 1, b)
        layers.append((x, W, g, bias, i > 0))
    started = time.perf_counter()
    for _ in range(epochs * steps):
        for x, W, g, bias, need_x in layers:
            torch.baddbmm(bias, x, W.transpose(1, 2))
            torch.bmm(g.transpose(1, 2), x)
            if need_x:
                torch.bmm(g, W)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--shadows", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--exact", action="store_true", help="time the exact path (batched.FAST = False)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {'exact' if args.exact else 'fast'} path; "
          f"FAST default {batched.FAST}")
    for name in (list(WORKLOADS) if args.workload == "all" else [args.workload]):
        before = sgemm_gflops()
        t, flops = phases(name, shadows=args.shadows, epochs=args.epochs, exact=args.exact)
        bare = gemms_alone(name, shadows=args.shadows, epochs=args.epochs)
        peak = (before + sgemm_gflops()) / 2
        total = sum(t.values())
        print(f"{name}: {total:.2f} s, {100 * flops / 1e9 / peak / total:.0f}% of ceiling; GEMMs alone "
              f"{bare:.2f} s = {100 * flops / 1e9 / peak / bare:.0f}% of ceiling at these shapes; "
              f"load {os.getloadavg()[0]:.1f}")
        print("   " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in t.items()), flush=True)


if __name__ == "__main__":
    main()
