"""The single-model training loop shared by teachers, students and shadow models.

Randomness is explicit: parameters come from ``build_model(seed)`` and the minibatch
order from a generator seeded with the same seed, so a model is a pure function of
(recipe, data, seed). The batched shadow trainer reproduces this loop exactly.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from distillguard import device, distributed
from distillguard.checkpoints import Checkpoint, snapshot
from distillguard.distributed import World, world
from distillguard.config import ModelConfig
from distillguard.models.inference import predict_logits
from distillguard.train.rows import Rows, TensorRows, iter_batches, total

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], float]


@dataclass(frozen=True)
class Recipe:
    """How to train: the optimizer is AdamW, minibatches are a fresh permutation per epoch."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Recipe:
        return cls(cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay)


def make_optimizer(params: list[torch.Tensor], recipe: Recipe) -> torch.optim.AdamW:
    """The AdamW every training loop uses, single model or stacked shadows alike.

    The single-tensor implementation (``foreach=False``, ``fused=False``): each of its
    passes is one elementwise op, rounded the same wherever an element sits in a tensor,
    so AdamW over a stacked tensor (or slices of one) gives each model, bit for bit, the
    update it would get alone; that is what keeps ``fit_many`` equal to ``fit``.
    ``fused=True`` is about 20% faster on the audit's shadows but rounds an element in a
    SIMD lane and one in a tensor's scalar remainder differently in the last bit
    (measured: the first 1-ulp difference after 12 steps, 4e-5 in the parameters after
    30 epochs), which would break that equality.
    """
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, foreach=False, fused=False)


def batch_order(n: int, *, recipe: Recipe, generator: torch.Generator,
                blocks: Sequence[int] | None = None) -> list[torch.Tensor]:
    """One epoch's minibatches of row indices (the last one may be smaller).

    ``blocks``: sizes of consecutive blocks of the ``n`` rows, shuffled block-locally as a
    streamed set is (:mod:`distillguard.train.rows`); None is one block, a plain permutation.
    """
    return list(iter_batches(blocks if blocks is not None else (n,), batch_size=recipe.batch_size,
                             generator=generator))


def minibatch_parts(index: torch.Tensor, here: World, data_parallel: bool = True) -> list[torch.Tensor]:
    """The minibatch parts this process computes: one per rank under torchrun, all of them alone."""
    n_parts = distributed.batch_parts() if data_parallel else 1
    if n_parts == 1:
        return [index]
    parts = list(index.tensor_split(n_parts))
    return [parts[here.rank]] if here.size > 1 else parts


def data_parallel_module(model: nn.Module, here: World) -> nn.Module:
    """The module the training step calls: DDP-wrapped under torchrun, else the model itself."""
    if here.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    on = device.of(model)
    wrapped = DistributedDataParallel(model, device_ids=[on] if on.type == "cuda" else None)
    wrapped.register_comm_hook(None, distributed.sum_gradients_hook)
    return wrapped


def fit(model: nn.Module, X: torch.Tensor | Rows, targets: torch.Tensor | None = None, *, loss_fn: LossFn,
        recipe: Recipe, seed: int, validation: tuple[torch.Tensor, torch.Tensor] | Rows | None = None,
        metric: MetricFn | None = None, on_epoch: Callable[[int], None] | None = None,
        checkpoint: Checkpoint | None = None, data_parallel: bool = True, last_state: dict | None = None,
        ) -> tuple[nn.Module, list[dict]]:
    """Train ``model`` in place and return it with the best validation state loaded.

    Training runs on :func:`distillguard.device.current` (the model returns on the CPU).
    Under torchrun each rank computes its part of every minibatch and DDP sums the parts'
    gradients; one process with ``[run] batch_split`` parts accumulates the same sums, so
    with two parts the two runs agree bit for bit (same thread count).

    Args:
        X: (n, d) inputs; targets: (n,) class indices or (n, C) teacher logits. Or ``X``
            is a :class:`~distillguard.train.rows.Rows` (targets None): rows in blocks,
            possibly on disk, drawn in the block-local order of ``train/rows.py``.
        loss_fn: (logits, targets) -> scalar mean loss over the batch.
        validation: optional (X_val, targets_val) or Rows for checkpoint selection by
            ``metric`` (higher is better; the earliest best epoch wins). Without it the last
            epoch is kept. Over blocks, the metric is their row-weighted mean.
        on_epoch: called with the epoch number after each epoch (progress bars).
        checkpoint: where to save the state periodically and resume from (exactly).
        data_parallel: under torchrun, share each minibatch among the ranks (False: this
            rank trains the model alone, e.g. a shadow).
        last_state: a dict filled with the last epoch's state before the best is loaded.

    Returns:
        The model and a per-epoch log (train loss, validation metric).
    """
    data, validation = _as_rows(X, targets, validation)
    here, target = (world() if data_parallel else World()), device.current()
    model.to(target)
    step_model = data_parallel_module(model, here)
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same batches on every device and rank
    optimizer = make_optimizer(list(model.parameters()), recipe)
    best = _Selection()
    log, start = _resume(checkpoint, model=model, optimizer=optimizer, generator=generator, best=best)
    for epoch in range(1, start + 1):
        if on_epoch is not None:
            on_epoch(epoch)
    for epoch in range(start, recipe.epochs):
        loss = _train_epoch(step_model, data, optimizer, generator, loss_fn=loss_fn, recipe=recipe, here=here,
                            target=target, data_parallel=data_parallel)
        entry = {"epoch": epoch + 1, "train_loss": loss}
        if validation is not None and metric is not None:
            best.consider(entry, model, _validation_score(model, validation, metric))
        log.append(entry)
        if checkpoint is not None and epoch + 1 < recipe.epochs and checkpoint.due():
            checkpoint.save({"epoch": epoch + 1, "model": snapshot(model.state_dict()),
                             "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                             "best_score": best.score, "best_state": best.state, "log": log},
                            point=f"epoch{epoch + 1}")
        if on_epoch is not None:
            on_epoch(epoch + 1)
    if last_state is not None:
        last_state.update(snapshot(model.state_dict()))
    if best.state is not None:
        model.load_state_dict(best.state)
    model.eval()
    return model.cpu(), log


def _as_rows(X: torch.Tensor | Rows, targets: torch.Tensor | None,
             validation: tuple[torch.Tensor, torch.Tensor] | Rows | None) -> tuple[Rows, Rows | None]:
    """``fit``'s training and validation data as :class:`Rows`, whichever form they came in."""
    if targets is None and isinstance(X, torch.Tensor):
        raise TypeError("fit(model, X, targets): targets are missing (only a Rows source carries its own)")
    data = X if targets is None else TensorRows(X, targets)
    return data, (TensorRows(*validation) if isinstance(validation, tuple) else validation)


class _Selection:
    """Checkpoint selection by a validation metric, higher is better: the earliest best epoch wins."""

    def __init__(self) -> None:
        self.score, self.state = -float("inf"), None

    def consider(self, entry: dict, model: nn.Module, score: float) -> None:
        """Record ``score`` in the epoch's log ``entry``; keep a copy of the model if it is the best yet."""
        entry["val_score"] = score
        if score > self.score:
            self.score, self.state = score, copy.deepcopy(model.state_dict())
            entry["selected"] = True


def _resume(checkpoint: Checkpoint | None, *, model: nn.Module, optimizer: torch.optim.Optimizer,
            generator: torch.Generator, best: _Selection) -> tuple[list[dict], int]:
    """Load a saved state in place, if there is one; returns (log, epochs done)."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        return [], 0
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    best.score, best.state = saved["best_score"], saved["best_state"]
    return saved["log"], saved["epoch"]


def _train_epoch(step_model: nn.Module, data: Rows, optimizer: torch.optim.Optimizer, generator: torch.Generator, *,
                 loss_fn: LossFn, recipe: Recipe, here: World, target: torch.device, data_parallel: bool) -> float:
    """One pass over ``data`` in minibatches drawn from ``generator``; returns the mean train loss.

    Each process computes its parts of a minibatch (see :func:`minibatch_parts`); the
    loss is summed over all ranks before it is averaged.
    """
    step_model.train()
    total, count = 0.0, 0
    for index in iter_batches(data.sizes, batch_size=recipe.batch_size, generator=generator):
        optimizer.zero_grad(set_to_none=True)
        for part in minibatch_parts(index, here, data_parallel):
            inputs, wanted = data.take(part)
            logits = step_model(inputs.to(target))
            loss = loss_fn(logits, wanted.to(target)) if len(part) else logits.sum()
            # Weighted by its share of the minibatch, the parts' gradients sum (accumulated
            # here, all-reduced across ranks) to the gradient of the minibatch's mean loss.
            (loss * (len(part) / len(index)) if len(part) != len(index) else loss).backward()
            total += float(loss.detach()) * len(part)
            count += len(part)
        optimizer.step()
    if here.size > 1:
        total, count = distributed.all_sum([total, count])
    return total / max(count, 1)


def _validation_score(model: nn.Module, validation: Rows, metric: MetricFn) -> float:
    """``metric`` on the validation rows, block by block, combined by row count."""
    scores = [(metric(predict_logits(model, X), t), len(t)) for X, t in validation.blocks()]
    if len(scores) == 1:
        return scores[0][0]
    return sum(score * n for score, n in scores) / max(total(validation), 1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(-1) == labels).float().mean()) if len(labels) else 0.0
