"""One DP-SGD epoch over an Opacus-wrapped model, optimizer and loader.

Kept apart from :mod:`distillguard.train.dp` (settings, set-up, resume) because this is
where a step's per-example clipping, noise and mean are taken, whole or with the
minibatch in parts (torchrun ranks, or ``[run] batch_split``).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from distillguard import distributed
from distillguard.train.loop import minibatch_parts

if TYPE_CHECKING:  # opacus is imported where it is used: only DP runs need it
    from opacus.optimizers import DPOptimizer


def train_epoch_dp(model: nn.Module, optimizer: DPOptimizer, loader: DataLoader, *,
                   exact_mean: bool, label_smoothing: float = 0.0, data_parallel: bool = True) -> tuple[float, int]:
    """One pass over ``loader``; returns (mean train loss, optimizer steps).

    Opacus divides the noisy gradient sum by the *expected* batch size. With Poisson
    sampling that is required (dividing by the realised size would leak it); with fixed
    batches (``exact_mean``) we divide by the realised size instead, a post-processing
    rescaling of the noisy sum that costs no privacy and matches ``loop.fit``'s mean loss.

    With the minibatch in parts (torchrun, or ``[run] batch_split``) see :func:`step_in_parts`.
    """
    model.train()
    here = distributed.world() if data_parallel else distributed.World()
    split = data_parallel and distributed.batch_parts() > 1
    total, count, steps = 0.0, 0, 0
    for xb, yb in loader:  # (B, d), (B,); B varies under Poisson sampling and may be 0
        optimizer.zero_grad(set_to_none=True)
        if exact_mean:
            optimizer.expected_batch_size = len(yb)
        if split:
            loss_sum = step_in_parts(model, optimizer, xb, yb, here=here, label_smoothing=label_smoothing)
        else:
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            with warnings.catch_warnings():  # Opacus' backward hooks fire on outputs: inputs need no grad
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
            optimizer.step()
            loss_sum = float(loss.detach()) * len(yb)
        steps += 1
        if len(yb):
            total += loss_sum
            count += len(yb)
    if split and here.size > 1:
        total = distributed.all_sum([total])[0]
    optimizer.zero_grad(set_to_none=True)  # drop per-sample gradients before evaluation
    return total / max(count, 1), steps


def step_in_parts(model: nn.Module, optimizer: DPOptimizer, xb: torch.Tensor, yb: torch.Tensor, *,
                   here: distributed.World, label_smoothing: float) -> float:
    """One DP-SGD step with the minibatch's clipped-gradient sum computed in parts.

    Per-example clipping makes the clipped sum a plain sum over examples, so each part
    (each rank's contiguous share under torchrun, or every part in one process) clips and
    sums its own examples; the parts' sums are added (all-reduced across ranks), and then
    every rank adds the *same* Gaussian noise, drawn from the same seeded generator, once.
    That is Opacus' ``DPOptimizer.pre_step`` with the accumulation split, so the privacy
    accounting is unchanged: one noisy sum per step, at the same σ and sampling rate.
    Returns this process's sum of per-example losses.
    """
    loss_sum = 0.0
    parts = minibatch_parts(torch.arange(len(yb)), here)
    for k, part in enumerate(parts):
        loss = F.cross_entropy(model(xb[part]), yb[part], label_smoothing=label_smoothing)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        optimizer.clip_and_accumulate()  # p.summed_grad += this part's clipped per-example sum
        if k + 1 < len(parts):
            for p in optimizer.params:
                p.grad_sample = None  # the next part's backward starts a fresh per-example batch
        if len(part):
            loss_sum += float(loss.detach()) * len(part)
    if here.size > 1:
        for p in optimizer.params:
            torch.distributed.all_reduce(p.summed_grad, op=torch.distributed.ReduceOp.SUM)
    optimizer.add_noise()
    optimizer.scale_grad()  # ÷ expected batch size (one accumulated iteration: the last part's)
    if optimizer.step_hook:
        optimizer.step_hook(optimizer)  # the accountant records the step
    optimizer._is_last_step_skipped = False
    optimizer.original_optimizer.step()
    return loss_sum
