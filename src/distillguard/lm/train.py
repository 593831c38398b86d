"""Training loops of the LM track: teacher fine-tuning on members, student distillation.

Randomness is explicit, as in :mod:`distillguard.train.loop`: the minibatch order comes
from a generator seeded with ``seed`` (distillation: ``derive_seed(seed, "order", epoch)``
for the shard reader), and dropout draws from torch's global generator inside
``fork_rng`` seeded with ``derive_seed(seed, "dropout")``, so on CPU a model is a pure
function of (initial weights, data, recipe, seed) and the caller's random state is left
alone. The optimizer is AdamW.

Under torchrun both loops are data parallel as the classifier loop is
(:func:`distillguard.train.loop.fit`): every rank draws the same minibatch, computes the
loss of its contiguous share of the rows weighted by its share of the minibatch's tokens,
and DDP sums the gradients; one process with ``[run] batch_split`` parts accumulates the
same sums, so 2 ranks and 1 process with 2 parts train the same model (bit for bit
without dropout, the default; with dropout each rank draws its own masks).

Both loops checkpoint at epoch ends when given a :class:`~distillguard.checkpoints.Checkpoint`
(model, optimizer, the batch-order generator, the dropout generator, the log), so a
killed stage resumes at its last saved epoch and ends with the same weights as an
uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from distillguard import distributed
from distillguard.checkpoints import Checkpoint, snapshot
from distillguard.lm.blocks import TokenBlocks
from distillguard.lm.losses import check_loss_params, hard_token_targets, sparse_kd_loss
from distillguard.lm.models import check_vocab_size, context_length
from distillguard.lm.softlabel_reader import SoftLabelReader
from distillguard.seeding import derive_seed
from distillguard.train.loop import data_parallel_module, minibatch_parts

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _check_recipe(*, epochs: int, lr: float, batch_size: int) -> None:
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError("epochs must be >= 0, batch_size >= 1 and lr > 0. "
                         f"Got {epochs!r}, {batch_size!r}, {lr!r} instead.")


def next_token_loss(
    model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, *, reduction: str = "mean",
    forward: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Next-token cross-entropy over real positions.

    Args:
        ids: (B, L) token ids; mask: (B, L) bool, True at real tokens (moved to the
            model's device).
        reduction: ``"mean"`` over predicted tokens, or ``"none"`` for (B, L−1) with 0 at padding.
        forward: the module to call (the model's DDP wrapper under torchrun); default the model.
    """
    ids, mask = ids.to(model.device), mask.to(model.device)
    logits = (forward or model)(input_ids=ids, attention_mask=mask.long()).logits[:, :-1]  # (B, L-1, V)
    targets = ids[:, 1:]  # (B, L-1)
    valid = (mask[:, 1:] & mask[:, :-1]).to(logits.dtype)  # (B, L-1)
    per_token = F.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none") * valid  # (B, L-1)
    if reduction == "none":
        return per_token
    return per_token.sum() / valid.sum().clamp_min(1.0)


def train_causal_lm(
    model: PreTrainedModel,
    token_blocks: TokenBlocks,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    on_epoch: Callable[[int], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> list[dict[str, float]]:
    """Fine-tune ``model`` in place with plain next-token CE (the teacher on the members).

    Args:
        model: causal LM; its context must hold ``token_blocks.ids.shape[1]`` tokens.
        token_blocks: packed (N, L) blocks with real lengths.
        epochs, lr, batch_size, weight_decay: AdamW recipe; a fresh permutation per epoch.
        seed: minibatch order and dropout.
        grad_clip: max global gradient norm (None = off).
        on_epoch: called with the epoch number after each epoch (progress bars).

    Returns:
        Per-epoch log: ``{"epoch", "loss"}`` (mean token CE over the epoch's batches).
    """
    _check_recipe(epochs=epochs, lr=lr, batch_size=batch_size)
    if token_blocks.ids.shape[1] > context_length(model):
        raise ValueError(f"blocks of {token_blocks.ids.shape[1]} tokens exceed the model's context of "
                         f"{context_length(model)}; use block_len <= n_positions")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    here = distributed.world()
    forward = data_parallel_module(model, here)
    log: list[dict[str, float]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "dropout"))
        start = _resume(checkpoint, model, optimizer, log, on_epoch, generator=generator)
        for epoch in range(start, epochs):
            model.train()
            total, count = 0.0, 0
            for index in torch.randperm(len(token_blocks), generator=generator).split(batch_size):
                optimizer.zero_grad(set_to_none=True)
                for part_loss in _next_token_backward(model, token_blocks, index, forward=forward, here=here):
                    total += part_loss
                _clip_and_step(model, optimizer, grad_clip)
                count += 1
            if here.size > 1:
                total = distributed.all_sum([total])[0]
            log.append({"epoch": epoch, "loss": total / max(count, 1)})
            _save(checkpoint, model, optimizer, log, epoch=epoch + 1, epochs=epochs, generator=generator)
            if on_epoch is not None:
                on_epoch(epoch)
    model.eval()
    return log


def _next_token_backward(model: PreTrainedModel, token_blocks: TokenBlocks, index: torch.Tensor, *,
                         forward: torch.nn.Module, here: distributed.World) -> list[float]:
    """Backward of one minibatch's mean token CE over this rank's parts; each part's loss value.

    The minibatch's mean token loss = the sum over parts of (part's token-loss sum) /
    (batch's tokens), so parts of any split add up to the loss of the whole minibatch.
    """
    mask = token_blocks.mask
    tokens = (mask[index][:, 1:] & mask[index][:, :-1]).sum().clamp_min(1)
    losses = []
    for part in minibatch_parts(index, here):
        rows = part if len(part) else index[:1]  # an empty share still joins DDP's all-reduce
        per_token = next_token_loss(model, token_blocks.ids[rows], mask[rows], reduction="none", forward=forward)
        loss = per_token.sum() / tokens.to(per_token.device) * (1 if len(part) else 0)
        loss.backward()
        losses.append(loss.item())
    return losses


def _resume(checkpoint: Checkpoint | None, model, optimizer, log: list, on_epoch, *,
            generator: torch.Generator | None = None) -> int:
    """Restore a saved epoch boundary (inside the loop's ``fork_rng``); the epoch to start at."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        return 0
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["dropout_rng"])
    if generator is not None:
        generator.set_state(saved["order_rng"])
    log.extend(saved["log"])
    for epoch in range(saved["epoch"]):
        if on_epoch is not None:
            on_epoch(epoch)
    return int(saved["epoch"])


def _save(checkpoint: Checkpoint | None, model, optimizer, log: list, *, epoch: int, epochs: int,
          generator: torch.Generator | None = None) -> None:
    if checkpoint is None or epoch >= epochs or not checkpoint.due():
        return
    state = {"epoch": epoch, "model": snapshot(model.state_dict()), "optimizer": optimizer.state_dict(),
             "dropout_rng": torch.get_rng_state(), "log": list(log)}
    if generator is not None:
        state["order_rng"] = generator.get_state()
    checkpoint.save(state, point=f"epoch{epoch}")


def _clip_and_step(model: PreTrainedModel, optimizer: torch.optim.Optimizer, grad_clip: float | None) -> None:
    """After the backward passes (their gradients already summed across ranks): clip, step."""
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def distill_causal_lm(
    student: PreTrainedModel,
    shard_reader: SoftLabelReader,
    *,
    loss: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    shuffle_rows: int = 1024,
    hard_vocab: torch.Tensor | None = None,
    on_epoch: Callable[[int], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> list[dict[str, float]]:
    """Train ``student`` in place from stored top-k teacher labels only.

    The student never sees the teacher or its training text: only the transfer blocks
    and the teacher's top-k log-probabilities on them (DESIGN.md, stage 3).

    Args:
        student: causal LM with the teacher's vocabulary (checked against the labels).
        shard_reader: the label stage's output.
        loss, beta, temperature: see :func:`distillguard.lm.losses.sparse_kd_loss`.
        epochs, lr, batch_size, weight_decay, grad_clip: AdamW recipe.
        seed: batch order per epoch and dropout.
        shuffle_rows: the reader's shuffle window.
        hard_vocab: (V,) bool or None: wherever the transfer text's next token is one of
            these (e.g. :func:`~distillguard.lm.tokenizer.digit_token_mask`), the student
            learns that token (cross-entropy) instead of the teacher's labels
            (:func:`~distillguard.lm.losses.hard_token_targets`); None distills everywhere.
        on_epoch: called with the epoch number after each epoch.

    Returns:
        Per-epoch log: ``{"epoch", "loss"}`` (token-weighted mean KD loss).
    """
    kd = {"loss": loss, "beta": beta, "temperature": temperature}
    _check_distillation(student, shard_reader, kd=kd, epochs=epochs, lr=lr, batch_size=batch_size)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
    here = distributed.world()
    forward = data_parallel_module(student, here)
    log: list[dict[str, float]] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "dropout"))
        start = _resume(checkpoint, student, optimizer, log, on_epoch)
        for epoch in range(start, epochs):
            batches = shard_reader.batches(batch_size=batch_size, seed=derive_seed(seed, "order", epoch),
                                           shuffle_rows=shuffle_rows)
            total, tokens = _distill_epoch(student, batches, optimizer=optimizer, forward=forward, here=here,
                                           hard_vocab=hard_vocab, grad_clip=grad_clip, kd=kd)
            log.append({"epoch": epoch, "loss": total / max(tokens, 1)})
            _save(checkpoint, student, optimizer, log, epoch=epoch + 1, epochs=epochs)
            if on_epoch is not None:
                on_epoch(epoch)
    student.eval()
    return log


def _check_distillation(student: PreTrainedModel, shard_reader: SoftLabelReader, *, kd: dict, epochs: int, lr: float,
                        batch_size: int) -> None:
    """Recipe, loss parameters and vocabulary, checked before any training step."""
    _check_recipe(epochs=epochs, lr=lr, batch_size=batch_size)
    check_loss_params(**kd)
    check_vocab_size(student, shard_reader.vocab_size, what="the soft labels")


def _distill_epoch(student: PreTrainedModel, batches, *, optimizer: torch.optim.Optimizer, forward: torch.nn.Module,
                   here: distributed.World, hard_vocab: torch.Tensor | None, grad_clip: float | None,
                   kd: dict) -> tuple[float, int]:
    """One pass over the label batches: (token-weighted KD loss sum over every rank, tokens)."""
    student.train()
    total, tokens = 0.0, 0
    for batch in batches:
        batch = batch.to(student.device)
        optimizer.zero_grad(set_to_none=True)
        part_losses, n = _sparse_kd_backward(batch, forward=forward, here=here, hard_vocab=hard_vocab, kd=kd)
        for value in part_losses:
            total += value * n
        _clip_and_step(student, optimizer, grad_clip)
        tokens += n
    if here.size > 1:  # each rank holds its parts' share; every rank counted all the tokens
        total = distributed.all_sum([total])[0]
    return total, tokens


def _sparse_kd_backward(batch, *, forward: torch.nn.Module, here: distributed.World, hard_vocab: torch.Tensor | None,
                        kd: dict) -> tuple[list[float], int]:
    """Backward of one minibatch's KD loss over this rank's parts: (each part's loss value, the minibatch's tokens).

    With ``hard_vocab``, positions whose next token is in it learn that token instead
    (:func:`~distillguard.lm.losses.hard_token_targets`). When the minibatch comes in
    parts, each part's loss is weighted by its share of the minibatch's tokens.
    """
    hard, mask = None, batch.mask
    if hard_vocab is not None:
        hard, mask = hard_token_targets(batch.input_ids, batch.mask, hard_vocab)  # (B, L), (B, L)
    n = int(mask.sum())
    shared = distributed.batch_parts() > 1  # this minibatch's gradient comes in parts
    losses = []
    for part in minibatch_parts(torch.arange(len(batch.input_ids)), here):
        rows = part if len(part) else torch.arange(1)  # an empty share still joins DDP's all-reduce
        logits = forward(input_ids=batch.input_ids[rows], attention_mask=batch.mask[rows].long()).logits
        value = sparse_kd_loss(logits, batch.topk_ids[rows], batch.topk_logprobs[rows], batch.leftover[rows],
                               mask=mask[rows], hard_targets=None if hard is None else hard[rows], **kd)
        if shared:  # weighted by the part's share of the minibatch's tokens
            value = value * (int(mask[rows].sum()) / max(n, 1) if len(part) else 0.0)
        value.backward()
        losses.append(value.item())
    return losses, n


@torch.no_grad()
def evaluate_sparse_kd(
    student: PreTrainedModel,
    shard_reader: SoftLabelReader,
    *,
    loss: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    batch_size: int = 16,
) -> float:
    """Token-weighted mean KD loss of ``student`` against the stored labels (no training)."""
    check_vocab_size(student, shard_reader.vocab_size, what="the soft labels")
    student.eval()
    total, tokens = 0.0, 0
    for batch in shard_reader.batches(batch_size=batch_size):
        batch = batch.to(student.device)
        logits = student(input_ids=batch.input_ids, attention_mask=batch.mask.long()).logits  # (B, L, V)
        value = sparse_kd_loss(logits, batch.topk_ids, batch.topk_logprobs, batch.leftover, mask=batch.mask,
                               loss=loss, beta=beta, temperature=temperature)
        n = int(batch.mask.sum())
        total, tokens = total + value.item() * n, tokens + n
    return total / max(tokens, 1)


@torch.no_grad()
def evaluate_lm_loss(model: PreTrainedModel, token_blocks: TokenBlocks, *, batch_size: int = 16) -> float:
    """Mean next-token CE over all real predicted tokens (exp of it = perplexity)."""
    model.eval()
    mask = token_blocks.mask
    total, count = 0.0, 0.0
    for start in range(0, len(token_blocks), batch_size):
        ids, m = token_blocks.ids[start:start + batch_size], mask[start:start + batch_size]
        total += float(next_token_loss(model, ids, m, reduction="none").sum())
        count += float((m[:, 1:] & m[:, :-1]).sum())
    return total / max(count, 1.0)
