"""Student training from stored teacher logits: pure, and blind by construction.

:func:`train_student` takes the transfer inputs and the teacher's logits on them, and
nothing else: there is no argument through which member data could arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F

from distillguard.checkpoints import Checkpoint
from distillguard.config import DistillConfig, StudentConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema
from distillguard.models.artifact import Classifier
from distillguard.models.classifiers import build_model, model_arch
from distillguard.seeding import derive_seed
from distillguard.train.kd import kd_loss
from distillguard.train.loop import Recipe, accuracy, fit
from distillguard.train.rows import BlockRows, array_loader
from distillguard.train.teacher import validation_rows


def distill_objective(distill: DistillConfig):
    """The (student_logits, teacher_logits) -> loss function the spec asks for."""
    return lambda s, t: kd_loss(s, t, temperature=distill.temperature, alpha=distill.alpha)


def train_student(
    transfer_X: np.ndarray,
    teacher_logits: np.ndarray,
    *,
    schema: Schema,
    cfg: StudentConfig,
    distill: DistillConfig,
    seed: int,
    on_epoch=None,
    checkpoint: Checkpoint | None = None,
    block_ids: np.ndarray | None = None,
) -> tuple[Classifier, list[dict]]:
    """Distill a student from (transfer inputs, teacher logits at T=1), held in memory.

    Args:
        transfer_X: (n, d) raw transfer features.
        teacher_logits: (n, C) stored teacher logits; the temperature is applied here.
        block_ids: (n,) non-decreasing label-shard number of each row (see
            :func:`student_split`); None: one block. The distill stage passes the same
            blocks to :func:`train_student_on_blocks`, which reads them from disk.

    Checkpoints are selected on a held-out slice of the transfer set by the same KD
    objective (public data only). The student's scaler is fitted on transfer inputs.
    """
    logits = np.asarray(teacher_logits, dtype=np.float32)
    return train_student_on_blocks(in_memory_blocks(transfer_X, logits, block_ids), schema=schema, cfg=cfg,
                                   distill=distill, seed=seed, on_epoch=on_epoch, checkpoint=checkpoint)


def train_student_on_labels(
    transfer_X: np.ndarray,
    labels: np.ndarray,
    *,
    schema: Schema,
    cfg: StudentConfig,
    seed: int,
    on_epoch=None,
    checkpoint: Checkpoint | None = None,
    block_ids: np.ndarray | None = None,
) -> tuple[Classifier, list[dict]]:
    """Train a student with cross-entropy on released hard labels (PATE's noisy votes).

    Args:
        transfer_X: (n, d) raw transfer features of the answered queries only.
        labels: (n,) class indices, as released by the aggregator.

    The labels are already differentially private, so selecting checkpoints by accuracy
    on a held-out slice of them is post-processing and costs no privacy. Same scaler,
    split and seeds as :func:`train_student`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(transfer_X):
        raise ValueError(f"labels must be ({len(transfer_X)},) class indices; got shape {labels.shape}")
    return train_student_on_blocks(in_memory_blocks(transfer_X, labels.astype(np.int64), block_ids), schema=schema,
                                   cfg=cfg, distill=None, seed=seed, on_epoch=on_epoch, checkpoint=checkpoint)


@dataclass(frozen=True)
class StudentBlocks:
    """The student's training set, block by block: where the rows are and which shard each block is."""

    rows: BlockRows
    shard_numbers: tuple[int, ...]


def in_memory_blocks(transfer_X: np.ndarray, targets: np.ndarray, block_ids: np.ndarray | None) -> StudentBlocks:
    """Arrays as :class:`StudentBlocks`, cut where ``block_ids`` changes (None: one block 0)."""
    if len(transfer_X) != len(targets):
        raise ValueError(f"{len(transfer_X)} transfer rows but {len(targets)} targets")
    numbers, sizes = block_sizes(np.zeros(len(transfer_X), dtype=np.int64) if block_ids is None else block_ids)
    rows = BlockRows(array_loader(transfer_X, targets, sizes), [np.arange(n) for n in sizes])
    return StudentBlocks(rows, numbers)


def block_sizes(block_ids: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(block numbers, rows per block) of a non-decreasing per-row block number."""
    block_ids = np.asarray(block_ids, dtype=np.int64)
    if len(block_ids) and np.any(np.diff(block_ids) < 0):
        raise ValueError("block ids must be non-decreasing (rows in transfer-file order)")
    numbers, sizes = np.unique(block_ids, return_counts=True)
    if not len(numbers):
        return (0,), (0,)
    return tuple(int(b) for b in numbers), tuple(int(n) for n in sizes)


def student_split(shard_numbers: Sequence[int], sizes: Sequence[int], *, fraction: float, seed: int
                  ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per block: (training rows, validation rows), positions within the block.

    A seeded ``fraction`` of each block is held out for checkpoint selection, so the split
    streams with the blocks. Block number 0 uses the student's seed itself, so a transfer
    set within one shard splits as it always has; block ``b`` derives its own from ``b``.
    The audit's shadow students call this with the same blocks.
    """
    base = derive_seed(seed, "student")
    pairs = [validation_rows(n, fraction=fraction, seed=base if b == 0 else derive_seed(base, "block", b))
             for b, n in zip(shard_numbers, sizes)]
    return [t for t, _ in pairs], [v for _, v in pairs]


def flat_positions(per_block: Sequence[np.ndarray], sizes: Sequence[int]) -> np.ndarray:
    """Per-block positions as positions in the concatenation of the blocks."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    parts = [offsets[k] + np.asarray(p, dtype=np.int64) for k, p in enumerate(per_block)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def train_student_on_blocks(
    data: StudentBlocks,
    *,
    schema: Schema,
    cfg: StudentConfig,
    distill: DistillConfig | None,
    seed: int,
    on_epoch=None,
    checkpoint: Checkpoint | None = None,
) -> tuple[Classifier, list[dict]]:
    """The student from rows in blocks, wherever they live: KD on logits, or CE on labels (``distill`` None).

    At most two blocks are in memory at a time: the scaler is fitted block by block, the
    epoch order is block-local (``train/rows.py``) and validation is scored block by
    block. One block (every transfer set within ``[run] shard_rows``) trains exactly as
    the in-memory student always has.
    """
    train_rows, val_rows = student_split(data.shard_numbers, data.rows.sizes, fraction=cfg.val_fraction, seed=seed)
    scaler = Standardizer.fit_blocks(data.rows.subset(train_rows).raw_blocks())
    train = data.rows.subset(train_rows, transform=scaler.transform)
    validation = data.rows.subset(val_rows, transform=scaler.transform) if sum(len(v) for v in val_rows) else None
    if distill is None:
        objective, metric = F.cross_entropy, accuracy
    else:
        objective = distill_objective(distill)
        metric = lambda logits, t: -float(objective(logits, t))  # noqa: E731
    arch = model_arch(cfg, schema)
    model = build_model(arch, seed=derive_seed(seed, "student", "init"))
    model, log = fit(
        model, train, loss_fn=objective, recipe=Recipe.from_config(cfg),
        seed=derive_seed(seed, "student", "batches"), validation=validation,
        metric=metric, on_epoch=on_epoch, checkpoint=checkpoint,
    )
    return Classifier(model, arch, schema, scaler), log
