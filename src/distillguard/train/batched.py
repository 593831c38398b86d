"""Many small models trained at once, reproducing :func:`loop.fit` model by model.

The privacy audit trains dozens of shadow teachers and students that differ only in their
data rows and seeds. Trained one by one, every small step pays Python and dispatch
overhead (autograd bookkeeping, one AdamW call per tensor) and runs matrix products too
small to keep the cores busy. Here the S models' parameters are stacked into (S, ...)
tensors (``torch.func.stack_module_state``) and each step is a handful of batched ops.

Equivalence with the loop holds by construction:

* model s starts from ``build_model(arch, seed=seeds[s])`` and draws its own minibatch
  permutation each epoch from ``torch.Generator().manual_seed(seeds[s])`` through
  :func:`loop.batch_order`, as ``fit(..., seed=seeds[s])`` does;
* all models train on m rows, so step k of an epoch has one batch size for all of them
  (the smaller last batch included);
* the backpropagated loss is the sum over models of each model's own mean loss
  (``loss_fn`` called per model), so model s gets exactly its own gradient;
* AdamW is elementwise: one AdamW over the stacked parameters makes, element by element,
  the updates of S separate optimizers;
* checkpoint selection keeps stacked copies of the best parameters, with ``fit``'s rule.

The stacked models and their two forward paths (exact MLP GEMMs, or
``vmap(functional_call)``) are in :mod:`distillguard.train.stacked`.

Two paths share all of the above and differ in two places (``FAST``):

* fast (default): torch's fused AdamW, one kernel per stacked tensor, every element
  through its vector path (:class:`stacked.FusedAdamW`), and one ``vmap(loss_fn)`` call
  for all models when every op of the loss has a batching rule
  (:func:`stacked.summed_loss`; each model still gets exactly its own gradient). The
  fused kernel rounds differently in the last bit from the loop's single-tensor AdamW,
  and training grows that: parameters agree with the loop to 3e-7 after 30 epochs on
  benchmarks/bench_shadows.py's workloads (tests: within 1e-5), the audit's numbers to 3
  decimals (tests/e2e/test_reaudit.py). A model's update does not depend on which models
  share its stack, so any split of the models gives the same numbers, bit for bit;
* exact (``FAST = False``): the loop's own single-tensor AdamW
  (:func:`loop.make_optimizer`) on cache-sized slices of the stacked tensors
  (:class:`stacked.SlicedAdamW`) and one loss call per model: the loop's update bit for
  bit on the benchmark's shapes, and slower (benchmarks/bench_shadows.py times both).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from distillguard import device
from distillguard.checkpoints import Checkpoint, snapshot
from distillguard.models.classifiers import build_model
from distillguard.models.inference import predict_logits
from distillguard.train.loop import LossFn, MetricFn, Recipe, batch_order, fit
from distillguard.train.rows import TensorRows
from distillguard.train.stacked import (
    VMAP_ERRORS,
    BestStates,
    FusedAdamW,
    SlicedAdamW,
    Stack,
    loss_vmappable,
    predict_stacked,
    quiet_vmap_fallback,
    stack_models,
    stack_states,
    summed_loss,
    take,
    vmappable,
)

logger = logging.getLogger(__name__)

# Models stacked in one group: None picks as many as fit in GROUP_BYTES of parameters (at
# most MAX_GROUP), in balanced groups. Past that, a step's fresh (S, ...) gradient tensors
# no longer fit the allocator's reuse threshold or the cache and training gets slower per
# model; bigger shadow sets train group after group.
GROUP_SIZE: int | None = None
GROUP_BYTES = 32 << 20
MAX_GROUP = 64
# The fused optimizer and vmapped loss (see the module docstring); False: the exact path.
FAST = True


class _EpochProgress:
    """Calls ``on_epoch(1..epochs)`` once each, however the S × epochs work is split.

    The audit's progress bar counts epochs. Trained in one group, epoch e of every model
    ends together; in several groups or one model at a time, ``on_epoch(e)`` fires when
    the share of finished model-epochs first reaches e / epochs.
    """

    def __init__(self, on_epoch: Callable[[int], None] | None, *, n_models: int, epochs: int) -> None:
        self.on_epoch, self.n_models, self.epochs = on_epoch, n_models, epochs
        self.done = self.reported = 0

    def advance(self, model_epochs: int) -> None:
        self.done += model_epochs
        reached = min(self.done // max(self.n_models, 1), self.epochs)  # whole epochs' worth of work
        while self.on_epoch is not None and self.reported < reached:
            self.reported += 1
            self.on_epoch(self.reported)


def _epoch_rows(rows: torch.Tensor, generators: list[torch.Generator], recipe: Recipe,
                blocks: Sequence[int] | None = None) -> torch.Tensor:
    """(S, m) data rows in this epoch's order for each model, drawn from its own generator.

    ``batch_order`` is the loop's function, so each permutation (and the generator state it
    leaves behind) is the loop's; concatenating its batches gives back the permutation.
    """
    m = rows.shape[1]
    perms = torch.stack([torch.cat(batch_order(m, recipe=recipe, generator=g, blocks=blocks)) for g in generators])
    return rows.gather(1, perms.to(rows.device))



def _train_group(
    stack: Stack, X: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, *, loss_fn: LossFn, recipe: Recipe,
    seeds: Sequence[int], validation: tuple[torch.Tensor, torch.Tensor] | None, metric: MetricFn | None,
    progress: _EpochProgress, checkpoint: Checkpoint | None = None, blocks: Sequence[int] | None = None,
    with_last: bool = False,
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]] | None]:
    """``fit``'s loop for every stacked model at once; returns S state dicts (and, ``with_last``, the last epoch's).

    Args:
        rows: (S, m) rows of X / targets that each model trains on.
        validation: (S, v, *in) inputs and (S, v, ...) targets, or None.
        checkpoint: periodic saves of the whole group's state, resumed exactly.
    """
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    optimizer = (FusedAdamW if FAST else SlicedAdamW)(list(stack.params.values()), recipe)
    vmapped = FAST and loss_vmappable(loss_fn, stack.forward(take(X, rows[:, :2])), take(targets, rows[:, :2]))
    best = BestStates(stack.params) if validation is not None and metric is not None else None
    start = _restore_group(checkpoint, stack, optimizer, generators, best)
    progress.advance(stack.size * start)
    for epoch in range(start, recipe.epochs):
        stack.base.train()
        for index in _epoch_rows(rows, generators, recipe, blocks).split(recipe.batch_size, dim=1):  # (S, b), one b for all
            optimizer.zero_grad()
            # The sum of per-model means: its gradient w.r.t. model s's slice is model s's own.
            summed_loss(loss_fn, stack.forward(take(X, index)), take(targets, index), vmapped=vmapped).backward()
            optimizer.step()
        if best is not None:
            logits = predict_stacked(stack, validation[0], shared=False)
            scores = [metric(z, t) for z, t in zip(logits.unbind(0), validation[1].unbind(0))]
            best.update(torch.tensor(scores, dtype=torch.float64), stack.params)
        if checkpoint is not None and epoch + 1 < recipe.epochs and checkpoint.due():
            _save_group(checkpoint, epoch + 1, stack, optimizer, generators, best)
        progress.advance(stack.size)
    chosen = stack.state_dicts(best.final(stack.params) if best is not None else None)
    return chosen, (stack.state_dicts() if with_last else None)


def _save_group(checkpoint: Checkpoint, epoch: int, stack: Stack, optimizer: SlicedAdamW | FusedAdamW,
                generators: list[torch.Generator], best: BestStates | None) -> None:
    state = {"epoch": epoch, "params": snapshot(stack.params), "optimizer": optimizer.optimizer.state_dict(),
             "generators": [g.get_state() for g in generators]}
    if best is not None:
        state["best"] = {"score": best.score.clone(), "chosen": best.chosen.clone(), "tensors": snapshot(best.tensors)}
    checkpoint.save(state, point=f"epoch{epoch}")


def _restore_group(checkpoint: Checkpoint | None, stack: Stack, optimizer: SlicedAdamW | FusedAdamW,
                   generators: list[torch.Generator], best: BestStates | None) -> int:
    """Load a saved group state in place; returns the epoch to continue from (0: none)."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        return 0
    with torch.no_grad():
        for name, tensor in stack.params.items():
            tensor.copy_(saved["params"][name])
    optimizer.optimizer.load_state_dict(saved["optimizer"])
    for generator, state in zip(generators, saved["generators"]):
        generator.set_state(state)
    if best is not None:
        best.score, best.chosen = saved["best"]["score"], saved["best"]["chosen"]
        best.tensors = saved["best"]["tensors"]
    return int(saved["epoch"])


def _fit_looped(
    arch: dict, X: torch.Tensor, targets: torch.Tensor, *, rows: torch.Tensor, loss_fn: LossFn, recipe: Recipe,
    seeds: Sequence[int], val_rows: torch.Tensor | None, metric: MetricFn | None, progress: _EpochProgress,
    checkpoint: Checkpoint | None = None, first: int = 0, blocks: Sequence[int] | None = None,
    with_last: bool = False,
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]] | None]:
    """The reference: ``loop.fit`` once per model (model ``first + s`` names its checkpoint)."""
    states, lasts = [], [] if with_last else None
    for s, seed in enumerate(seeds):
        slot = checkpoint.child(f"model{first + s}") if checkpoint is not None else None
        done = _finished(slot, with_last)
        if done is not None:
            progress.advance(recipe.epochs)
            states += done[0]
            lasts = None if lasts is None else lasts + done[1]
            continue
        model = build_model(arch, seed=int(seed)).to(X.device)
        validation = (X[val_rows[s]], targets[val_rows[s]]) if val_rows is not None else None
        last: dict | None = {} if with_last else None
        fit(model, TensorRows(X[rows[s]], targets[rows[s]], blocks), loss_fn=loss_fn, recipe=recipe, seed=int(seed),
            validation=validation, metric=metric, on_epoch=lambda _epoch: progress.advance(1), checkpoint=slot,
            data_parallel=False, last_state=last)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if lasts is not None:
            lasts.append(last)
        _mark_finished(slot, states[-1:], None if last is None else [last])
    return states, lasts


def _finished(checkpoint: Checkpoint | None, with_last: bool = False) -> tuple[list, list | None] | None:
    """The trained states (and last-epoch states) a finished loop saved, or None if it has not finished."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None or "states" not in saved or (with_last and "last" not in saved):
        return None
    return saved["states"], (saved["last"] if with_last else None)


def _mark_finished(checkpoint: Checkpoint | None, states: list[dict[str, torch.Tensor]],
                   last: list[dict[str, torch.Tensor]] | None = None) -> None:
    """Replace a loop's in-progress state by its result, so a rerun skips it."""
    if checkpoint is not None:
        checkpoint.save({"states": states, **({"last": last} if last is not None else {})}, point="done")


def stackable(arch: dict) -> bool:
    """False for models that train one at a time whatever ``batched`` says: Hugging Face
    text classifiers (stateful modules with integer inputs, outside ``torch.func``'s reach)."""
    return arch.get("kind") != "hf-text"


def _groups(arch: dict, n_models: int) -> list[slice]:
    """Consecutive, balanced groups of models to stack (see ``GROUP_SIZE``)."""
    size = GROUP_SIZE
    if size is None:
        nbytes = sum(p.numel() * p.element_size() for p in build_model(arch, seed=0).parameters())
        size = max(1, min(MAX_GROUP, GROUP_BYTES // max(nbytes, 1)))
    n_groups = -(-n_models // size)
    per_group = -(-n_models // n_groups)
    return [slice(a, min(a + per_group, n_models)) for a in range(0, n_models, per_group)]


def _fit_groups(
    arch: dict, X: torch.Tensor, targets: torch.Tensor, *, rows: torch.Tensor, loss_fn: LossFn, recipe: Recipe,
    seeds: Sequence[int], val_rows: torch.Tensor | None, metric: MetricFn | None, strict: bool,
    progress: _EpochProgress, checkpoint: Checkpoint | None = None, blocks: Sequence[int] | None = None,
    with_last: bool = False,
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]] | None]:
    """One stacked group of models after another; the loop if the architecture cannot be vmapped."""
    states: list[dict[str, torch.Tensor]] = []
    lasts: list[dict[str, torch.Tensor]] | None = [] if with_last else None
    for g, group in enumerate(_groups(arch, len(seeds))):
        start = group.start
        slot = checkpoint.child(f"group{g}") if checkpoint is not None else None
        done = _finished(slot, with_last)
        if done is not None:
            progress.advance(len(done[0]) * recipe.epochs)
            states += done[0]
            lasts = None if lasts is None else lasts + done[1]
            continue
        stack = stack_models([build_model(arch, seed=int(seed)).to(X.device) for seed in seeds[group]])
        if not vmappable(stack, X, targets, rows[group], loss_fn):
            if strict:
                raise RuntimeError(f"fit_many(batched=True): a {arch.get('kind')!r} model cannot be vmapped")
            rest, rest_last = _fit_looped(arch, X, targets, rows=rows[start:], loss_fn=loss_fn, recipe=recipe,
                                          seeds=seeds[start:], metric=metric, progress=progress,
                                          val_rows=None if val_rows is None else val_rows[start:],
                                          checkpoint=checkpoint, first=start, blocks=blocks, with_last=with_last)
            return states + rest, None if lasts is None else lasts + rest_last
        validation = None if val_rows is None else (take(X, val_rows[group]), take(targets, val_rows[group]))
        group_states, group_last = _train_group(stack, X, targets, rows[group], loss_fn=loss_fn, recipe=recipe,
                                                seeds=seeds[group], validation=validation, metric=metric,
                                                progress=progress, checkpoint=slot, blocks=blocks, with_last=with_last)
        _mark_finished(slot, group_states, group_last)
        states += group_states
        lasts = None if lasts is None else lasts + group_last
    return states, lasts


def _check_inputs(X: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, seeds: Sequence[int],
                  val_rows: torch.Tensor | None, blocks: Sequence[int] | None) -> None:
    """Raise ValueError naming the first of ``fit_many``'s inputs whose shape does not fit the others."""
    if rows.dim() != 2 or rows.dtype != torch.int64:
        raise ValueError(f"rows must be an (S, m) int64 tensor, got shape {tuple(rows.shape)} {rows.dtype}")
    if len(seeds) != rows.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {rows.shape[0]} models (rows has shape {tuple(rows.shape)})")
    if len(X) != len(targets):
        raise ValueError(f"X has {len(X)} rows but targets has {len(targets)}")
    if val_rows is not None and (val_rows.dim() != 2 or val_rows.shape[0] != rows.shape[0] or val_rows.dtype != torch.int64):
        raise ValueError(f"val_rows must be an ({rows.shape[0]}, v) int64 tensor, got shape {tuple(val_rows.shape)} "
                         f"{val_rows.dtype}")
    if blocks is not None and sum(blocks) != rows.shape[1]:
        raise ValueError(f"block sizes add up to {sum(blocks)}, not the {rows.shape[1]} rows of each model")


def _to_current_device(X: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor,
                       val_rows: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The inputs of ``fit_many`` on :func:`distillguard.device.current`, where the models train."""
    target = device.current()
    return (X.to(target), targets.to(target), rows.to(target),
            val_rows.to(target) if val_rows is not None else None)


def fit_many(
    arch: dict,
    X: torch.Tensor,
    targets: torch.Tensor,
    *,
    rows: torch.Tensor,
    loss_fn: LossFn,
    recipe: Recipe,
    seeds: list[int],
    val_rows: torch.Tensor | None = None,
    metric: MetricFn | None = None,
    batched: bool | None = None,
    on_epoch: Callable[[int], None] | None = None,
    checkpoint: Checkpoint | None = None,
    blocks: Sequence[int] | None = None,
    with_last: bool = False,
) -> list[dict[str, torch.Tensor]] | tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Train S models of one architecture, each exactly as ``loop.fit`` would, all at once.

    Model s is ``fit(build_model(arch, seed=seeds[s]), X[rows[s]], targets[rows[s]],
    loss_fn=loss_fn, recipe=recipe, seed=seeds[s], validation=(X[val_rows[s]],
    targets[val_rows[s]]), metric=metric)``, to float rounding (about 1e-5 after 30
    epochs with the fused optimizer; bit for bit for MLPs on CPU with ``FAST = False``).

    Args:
        arch: architecture dict for ``build_model``.
        X: (N, *in) inputs shared by all models; each model picks its rows.
        targets: (N,) class indices or (N, C) teacher logits.
        rows: (S, m) int64 rows of X each model trains on; one m keeps the batches aligned.
        loss_fn: (logits (B, C), targets (B, ...)) -> scalar mean loss, called per model.
        recipe: epochs, batch size, AdamW learning rate and weight decay.
        seeds: S seeds, for both the initial parameters and the minibatch order.
        val_rows: (S, v) int64 rows for checkpoint selection by ``metric`` (None: last epoch).
        metric: (logits, targets) -> float, higher is better, called per model per epoch.
        batched: True: stacked (raises if the model cannot be vmapped); False: ``loop.fit``
            per model; None: stacked when a two-row probe of vmap succeeds, else the loop.
        on_epoch: called with 1, ..., epochs as the training of all models progresses.
        checkpoint: periodic saves per group of models (and each finished group's result);
            a rerun resumes exactly where the killed one stopped.
        blocks: sizes of consecutive blocks of each model's ``rows``, shuffled block-locally
            as the streamed student's rows are (``train/rows.py``); None: one block.
        with_last: also return the last epochs' states (audit/shadow_recipes.py).

    Returns:
        S state dicts in the order of ``seeds``; ``with_last``: a pair (those, the last epochs').
    """
    _check_inputs(X, targets, rows, seeds, val_rows, blocks)
    progress = _EpochProgress(on_epoch, n_models=len(seeds), epochs=recipe.epochs)
    if not len(seeds):
        return ([], []) if with_last else []
    X, targets, rows, val_rows = _to_current_device(X, targets, rows, val_rows if metric is not None else None)
    common = dict(loss_fn=loss_fn, recipe=recipe, seeds=seeds, val_rows=val_rows, metric=metric, progress=progress,
                  checkpoint=checkpoint, blocks=blocks, with_last=with_last)
    if batched is False or not stackable(arch):
        states, lasts = _fit_looped(arch, X, targets, rows=rows, **common)
    else:
        with quiet_vmap_fallback():
            states, lasts = _fit_groups(arch, X, targets, rows=rows, strict=bool(batched), **common)
    cpu = [[{k: v.cpu() for k, v in state.items()} for state in part] for part in (states, lasts or [])]
    return tuple(cpu) if with_last else cpu[0]


def predict_many(arch: dict, states: list[dict[str, torch.Tensor]], X: torch.Tensor, *,
                 batched: bool | None = None) -> torch.Tensor:
    """Eval-mode logits of S models of one architecture on the same inputs.

    Args:
        arch: architecture dict for ``build_model``.
        states: S state dicts of that architecture.
        X: (n, *in) inputs.
        batched: True: stacked; False: ``models.inference.predict_logits`` per model; None: stacked,
            or the loop if the model cannot be vmapped.

    Returns:
        (S, n, C) logits, each model's ``predict_logits`` to float rounding.
    """
    if not states or not len(X):
        return torch.empty(len(states), len(X), arch["n_classes"], dtype=X.dtype)
    X = X.to(device.current())
    if batched is not False and stackable(arch):
        stack = stack_states(arch, states, X.device)
        try:
            with quiet_vmap_fallback():
                return predict_stacked(stack, X, shared=True).cpu()
        except VMAP_ERRORS as error:
            if batched or stack.plan is not None:
                raise
            logger.info("predict_many: model cannot be vmapped (%s); predicting one model at a time", error)
    out = []
    for state in states:
        model = build_model(arch, seed=0).to(X.device)
        model.load_state_dict(state)
        out.append(predict_logits(model, X))
    return torch.stack(out).cpu()
