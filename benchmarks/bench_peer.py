"""The same LiRA audit workload trained by distillguard and by a plain PyTorch loop, side by side.

Usage: python benchmarks/bench_peer.py [--models 16] [--epochs 8] [--pool 3000] [--targets 4] [--threads N]
                                      [--no-docs]

The workload is the one LiRA's reference code runs (Carlini et al. 2022,
github.com/carlini/privacy, research/mi_lira_2021: train.py trains one model per
random half of the data, one after another; score.py/plot.py turn their outputs into
the online attack): ``--models`` MLPs [256, 256] on 600 standardized binary features
and 100 classes (the audit's teacher-size shadows), each on a random half of a
``--pool``-row pool (complementary pairs, so every record is in half the models),
AdamW (lr 1e-3), batch 64, ``--epochs`` epochs, no checkpoint selection. (With 500
rows per model and 20 epochs the models memorize their rows and LiRA reaches AUC 1.000
for both trainers, which compares nothing; 1,500 rows and 8 epochs leave room.)

* peer: what a user writes from that reference in PyTorch: per model, a fresh
  ``nn.Sequential``, a shuffling ``DataLoader`` and a training loop;
* distillguard: ``train.batched.fit_many``, the audit's shadow trainer (fused AdamW,
  stacked models).

Both are then scored by the same online LiRA with a global variance (the reference's
``fix_variance``), leave-one-out: each of ``--targets`` models is attacked with the
others as shadows; AUC and TPR at 1 % FPR are averaged over targets. Times, attack
numbers and the load average come from one run; the seeds differ between the two
trainers (each draws its own), so the attack numbers agree only to sampling noise.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench_shadows import N_CLASSES, N_FEATURES, purchase_like
from distillguard.audit.metrics import auc, tpr_at_fpr
from distillguard.audit.signals import lira_statistic
from distillguard.models.classifiers import architecture
from distillguard.train.batched import fit_many, predict_many
from distillguard.train.loop import Recipe
from results_page import add_docs_flag, publish

HIDDEN = [256, 256]


def membership(n_pool: int, n_models: int, *, seed: int) -> np.ndarray:
    """(models, pool) bool: model 2j trains on a random half, model 2j+1 on the other half."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n_models // 2):
        half = np.zeros(n_pool, bool)
        half[rng.permutation(n_pool)[: n_pool // 2]] = True
        masks += [half, ~half]
    return np.stack(masks)


def peer(X: torch.Tensor, y: torch.Tensor, keep: np.ndarray, *, recipe: Recipe) -> np.ndarray:
    """The reference's per-model loop in plain PyTorch; (models, pool, C) logits on the pool."""
    out = []
    for m, rows in enumerate(keep):
        torch.manual_seed(m)
        sizes = [N_FEATURES, *HIDDEN, N_CLASSES]
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        model = nn.Sequential(*layers[:-1])
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        index = torch.from_numpy(np.flatnonzero(rows))
        loader = DataLoader(TensorDataset(X[index], y[index]), batch_size=recipe.batch_size, shuffle=True)
        model.train()
        for _ in range(recipe.epochs):
            for xb, yb in loader:
                optimizer.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            out.append(model(X).numpy())
    return np.stack(out)


def ours(X: torch.Tensor, y: torch.Tensor, keep: np.ndarray, *, recipe: Recipe) -> np.ndarray:
    """distillguard's shadow trainer on the same rows; (models, pool, C) logits on the pool."""
    arch = architecture(kind="mlp", input_shape=(N_FEATURES,), n_classes=N_CLASSES, hidden=HIDDEN, channels=[])
    rows = torch.from_numpy(np.stack([np.flatnonzero(r) for r in keep]))
    states = fit_many(arch, X, y, rows=rows, loss_fn=F.cross_entropy, recipe=recipe,
                      seeds=[1000 + m for m in range(len(keep))], batched=True)
    return predict_many(arch, states, X).numpy()


def lira_online(logits: np.ndarray, labels: np.ndarray, keep: np.ndarray, *, targets: int) -> tuple[float, float]:
    """Leave-one-out online LiRA with a global variance; mean (AUC, TPR at 1 % FPR) over targets."""
    phi = lira_statistic(logits, labels)  # (models, pool)
    aucs, tprs = [], []
    for t in range(targets):
        others = np.arange(len(keep)) != t
        phi_s, in_s = phi[others], keep[others]
        mean_in = np.nanmean(np.where(in_s, phi_s, np.nan), axis=0)
        mean_out = np.nanmean(np.where(~in_s, phi_s, np.nan), axis=0)
        std_in, std_out = np.nanstd(np.where(in_s, phi_s, np.nan)), np.nanstd(np.where(~in_s, phi_s, np.nan))
        score = norm.logpdf(phi[t], mean_in, std_in + 1e-30) - norm.logpdf(phi[t], mean_out, std_out + 1e-30)
        aucs.append(auc(score, keep[t]))
        tprs.append(tpr_at_fpr(score, keep[t], 0.01))
    return float(np.mean(aucs)), float(np.mean(tprs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16, help="shadow/reference models, even (default 16)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--pool", type=int, default=3000, help="records; each model trains on half (default 3000)")
    parser.add_argument("--targets", type=int, default=4, help="models attacked leave-one-out (default 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    add_docs_flag(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y, _ = purchase_like(args.pool, seed=0)
    keep = membership(args.pool, args.models, seed=1)
    recipe = Recipe(epochs=args.epochs, batch_size=64, lr=1e-3, weight_decay=0.0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"{args.models} models × {args.epochs} epochs on {args.pool // 2} of {args.pool} records")
    rows = []
    for name, train in (("plain PyTorch loop (LiRA reference style)", peer), ("distillguard fit_many", ours)):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        logits = train(X, y, keep, recipe=recipe)
        seconds = time.perf_counter() - started
        auc_, tpr = lira_online(logits, y.numpy(), keep, targets=args.targets)
        rows.append((name, seconds, auc_, tpr, (load + os.getloadavg()[0]) / 2))
        print(f"{name:<44} {seconds:>7.1f} s  LiRA AUC {auc_:.3f}  TPR@1%FPR {tpr:.3f}  load {rows[-1][4]:.1f}",
              flush=True)
    ratio = rows[0][1] / rows[1][1]
    print(f"distillguard is {ratio:.1f}× faster")
    table = ["| trainer | time | time ratio | LiRA AUC | TPR at 1 % FPR | load |", "|---|---|---|---|---|---|"]
    table += [f"| {n} | {s:.1f} s | {rows[0][1] / s:.1f}× | {a:.3f} | {t:.3f} | {ld:.1f} |" for n, s, a, t, ld in rows]
    defaults = (args.models, args.epochs, args.pool, args.targets) == (16, 8, 3000, 4)
    if defaults:
        publish(args, "peer.md", "peer", "\n".join(table))


if __name__ == "__main__":
    main()
