"""Shadow pipelines that replay a Split-AI teacher (SELENA, Tang et al. 2022).

Each shadow runs the mechanism on its own training set (its half of the audit pool plus
its canary slots): ``k`` sub-teachers, every record of *that* set left out of ``l`` of
them by the shadow's own seeded draw, the public scaler the real teacher uses, and its
own routing key. The shadow teacher's answer on a record it trained on is the mean of the
``l`` sub-teachers that never saw it; on anything else, ``l`` sub-teachers picked by the
shadow's hash. So the audit's shadows answer members and nonmembers exactly as the
audited Split-AI does, which is what the attack must be calibrated on.

All S·k sub-teachers train at once (:func:`distillguard.train.pate.fit_partitions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from distillguard.audit.shadows import (AuditPool, CanarySet, _shadow_training_set, shadow_range,
                                        train_shadow_students)
from distillguard.checkpoints import Checkpoint
from distillguard.config import Spec
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema
from distillguard.models.split_ai import answering, average_selected, row_keys
from distillguard.seeding import derive_seed
from distillguard.train.batched import predict_many
from distillguard.train.loop import Recipe
from distillguard.train.pate import fit_partitions
from distillguard.train.release import Release, release
from distillguard.train.split_ai import split_ai_plan
from distillguard.train.teacher import model_architecture, teacher_loss


@dataclass(frozen=True)
class ShadowSplitAI:
    """One shadow's Split-AI: its exclusion table over its own training rows and its routing key.

    Attributes:
        table_keys: (u,) uint64 row keys of the shadow's training set; excluded: (u, l).
        rows: the rows (of the shadow's training set) each of the k sub-teachers trained on.
        scaler: the public one, or under self-distillation the shadow's own members' statistics.
    """

    table_keys: np.ndarray
    excluded: np.ndarray
    rows: list[np.ndarray]
    salt: int
    scaler: Standardizer
    X: np.ndarray  # the shadow's training rows, scaled


def shadow_salt(seed: int, s: int) -> int:
    return derive_seed(seed, "shadow", s, "split-ai", "route")


def train_shadow_split_ai(pool: AuditPool, canaries: CanarySet | None, membership: np.ndarray, *, spec: Spec,
                          schema: Schema, transfer_X: np.ndarray, eval_sets: dict[str, np.ndarray],
                          shadow_ids: Sequence[int] | None = None, on_epoch=None,
                          checkpoint: Checkpoint | None = None) -> tuple[dict[str, np.ndarray], list[ShadowSplitAI]]:
    """Replay the Split-AI teacher once per shadow.

    Returns:
        (teacher_out, plans): name -> (S', n, C) each shadow Split-AI's log mean probability
        of its answering sub-teachers, for the S' shadows ``shadow_ids`` (default all); and
        each shadow's :class:`ShadowSplitAI`.
    """
    ids, seed, split = shadow_range(membership, shadow_ids), spec.run.seed, spec.teacher.split_ai
    public = None if split.self_distill else Standardizer.fit(transfer_X)  # as the real Split-AI: public statistics
    blocks, labels, parts, plans = [], [], [], []
    offset = 0
    for s in ids:
        X, y, _, _ = _shadow_training_set(s, pool, canaries, membership, val_fraction=0.0, seed=seed)
        scaler = public if public is not None else Standardizer.fit(X)  # no public row: the shadow's own statistics
        X = scaler.transform(np.asarray(X, dtype=np.float32))
        table_keys, excluded, rows = split_ai_plan(X, k=split.k, l=split.l, seed=derive_seed(seed, "shadow", s))
        plans.append(ShadowSplitAI(table_keys, excluded, rows, shadow_salt(seed, s), scaler, X))
        parts += [offset + r for r in rows]
        blocks.append(X)
        labels.append(y.astype(np.int64))
        offset += len(X)
    arch = model_architecture(spec.teacher, schema)
    states = fit_partitions(
        arch, torch.from_numpy(np.concatenate(blocks)), torch.from_numpy(np.concatenate(labels)), parts,
        recipe=Recipe.from_config(spec.teacher), loss_fn=teacher_loss(spec.teacher),
        seeds=[derive_seed(seed, "shadow", s, "split-ai", t) for s in ids for t in range(split.k)],
        batched=None if spec.audit.batched else False, on_epoch=on_epoch,
        checkpoint=checkpoint.child("split-ai") if checkpoint is not None else None)
    out: dict[str, list[np.ndarray]] = {name: [] for name in eval_sets}
    shared = None if public is None else _scaled_with_keys(public, eval_sets)  # one scaler: hash the rows once
    for i, plan in enumerate(plans):
        sub = states[i * split.k:(i + 1) * split.k]
        sets = shared if shared is not None else _scaled_with_keys(plan.scaler, eval_sets)
        if split.self_distill:  # each shadow labels its own training set: its "transfer" answers
            sets = {**sets, "transfer": (plan.X, row_keys(plan.X))}
        for name, (X, keys) in sets.items():
            log_probs = torch.log_softmax(predict_many(arch, sub, torch.from_numpy(X)).double(), -1)  # (k, n, C)
            use = answering(keys, plan.table_keys, plan.excluded, k=split.k, salt=plan.salt)  # (n, l)
            out.setdefault(name, []).append(average_selected(log_probs, torch.from_numpy(use)).numpy())
    return {name: np.stack(v) for name, v in out.items()}, plans


def _scaled_with_keys(scaler: Standardizer, sets: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (the scaled float32 rows, their row keys): what the Split-AI's routing reads."""
    scaled = {name: scaler.transform(np.asarray(X, dtype=np.float32)) for name, X in sets.items()}
    return {name: (X, row_keys(X)) for name, X in scaled.items()}


def train_self_distilled_students(job, teacher_out: dict[str, np.ndarray], shadow_ids: Sequence[int] | None = None,
                                  *, on_epoch=None, checkpoint: Checkpoint | None = None) -> dict[str, np.ndarray]:
    """SELENA's second step per shadow: a student on the shadow's own training inputs and its Split-AI's labels.

    Args:
        job: the audit's :class:`~distillguard.audit.pipelines.ShadowJob`.
        teacher_out: the shadows' outputs from :func:`train_shadow_split_ai`; ``"transfer"`` holds
            (S', n, C) each shadow's answers on its own training rows (members by non-seeing sub-teachers).

    Every shadow's training set has the same size (paired halves, the same canary slots),
    so the students train together: their inputs are stacked and shadow s's release
    covers its own block of rows, labelled with the real run's ``[softlabels]`` knobs.
    """
    ids, seed = shadow_range(job.membership, shadow_ids), job.spec.run.seed
    own = [_shadow_training_set(s, job.pool, job.canaries, job.membership, val_fraction=0.0, seed=seed)[0] for s in ids]
    n = len(own[0])
    releases = []
    for i, (s, logits) in enumerate(zip(ids, teacher_out["transfer"])):
        chosen = release(logits, transfer_X=own[i], private_X=None, softlabels=job.spec.softlabels,
                         transfer=job.spec.transfer, seed=seed, noise_seed=derive_seed(seed, "shadow", s, "softlabels"))
        releases.append(Release(rows=i * n + chosen.rows, targets=chosen.targets))
    return train_shadow_students(releases, transfer_X=np.concatenate(own).astype(np.float32), spec=job.spec,
                                 schema=job.schema, eval_sets=job.eval_sets, shadow_ids=ids, on_model=on_epoch,
                                 checkpoint=checkpoint)
