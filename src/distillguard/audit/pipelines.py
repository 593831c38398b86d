"""The shadow pipelines of one audit, for any subset of the shadows: what a backend schedules.

Every shadow replays the defended pipeline: teacher (plain, HAMP, DP-SGD, ensemble, Split-AI or PATE),
release, student. Shadows are independent given their absolute index (audit/shadows.py),
so these functions take the ids of the shadows to replay and return their logits in that
order. The local backend (audit/placement.py) calls them once for all S shadows, with progress
bars and checkpoints; the Ray backend (audit/ray_backend.py) calls :func:`replay_shadows`
once per chunk of ids inside a task. One implementation serves both, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from distillguard.audit.shadow_recipes import PLAIN
from distillguard.audit.shadows import (AuditPool, CanarySet, replay_releases, train_shadow_students,
                                        train_shadow_teachers)
from distillguard.checkpoints import Checkpoint
from distillguard.config import Spec
from distillguard.data.types import Schema

Logits = dict[str, np.ndarray]  # eval set name -> (S', n, C), one row block per shadow trained


@dataclass(frozen=True)
class ShadowJob:
    """What every shadow pipeline of an audit reads; the same for all of them (Ray ships it once).

    Attributes:
        pool: the audit pool; membership: (S, n_pool) bool, the records shadow s trains on.
        canaries: the planted records and their (S, K) inclusions, or None.
        transfer_X: (q, d) the transfer rows the real teacher was queried on.
        eval_sets: name -> (n, d) raw rows the shadows' logits are taken on
            ("pool", "population" and, with canaries, "canaries").
        transfer_blocks: (q,) the transfer shard of each query row when they span several,
            which the shadow students replay as the real student's blocks; else None.
        recipe: "replay", "plain" or "both" (audit/shadow_recipes.py); with
            "both", the plain recipe's logits are beside the replay's, under ``PLAIN + name``.
        per_shadow_transfer: with DP synthetic transfer data, the rows of each shadow's own
            synthetic set: ``transfer_X`` is S such blocks, in shadow order; else None.
    """

    spec: Spec
    schema: Schema
    pool: AuditPool
    canaries: CanarySet | None
    membership: np.ndarray
    transfer_X: np.ndarray
    eval_sets: dict[str, np.ndarray]
    transfer_blocks: np.ndarray | None = None
    recipe: str = "replay"
    per_shadow_transfer: int | None = None

    @property
    def n_shadows(self) -> int:
        return len(self.membership)

    @property
    def teacher_sets(self) -> dict[str, np.ndarray]:
        """The teachers are also read on the transfer rows (if any): their release is built from those logits."""
        return {**self.eval_sets, "transfer": self.transfer_X} if len(self.transfer_X) else dict(self.eval_sets)


def train_teachers(job: ShadowJob, shadow_ids: Sequence[int] | None = None, *,
                   on_epoch: Callable[[int], None] | None = None, checkpoint: Checkpoint | None = None) -> Logits:
    """Shadow teachers of every mechanism but PATE; logits on ``job.teacher_sets``."""
    if job.spec.teacher.split_ai is not None:  # each shadow trains its own sub-teachers on its own set
        from distillguard.audit.split_ai_shadows import train_shadow_split_ai

        out, _ = train_shadow_split_ai(job.pool, job.canaries, job.membership, spec=job.spec, schema=job.schema,
                                       transfer_X=job.transfer_X, eval_sets=job.teacher_sets, shadow_ids=shadow_ids,
                                       on_epoch=on_epoch, checkpoint=checkpoint)
        return out
    if job.spec.teacher.ensemble > 1:  # each shadow trains its own ensemble on partitions of its half
        from distillguard.audit.pate_shadows import train_shadow_ensembles

        out, *_ = train_shadow_ensembles(job.pool, job.canaries, job.membership, spec=job.spec, schema=job.schema,
                                         n_teachers=job.spec.teacher.ensemble, transfer_X=job.transfer_X,
                                         eval_sets=job.teacher_sets, shadow_ids=shadow_ids, on_epoch=on_epoch,
                                         checkpoint=checkpoint)
        return out
    out, _ = train_shadow_teachers(job.pool, job.canaries, job.membership, spec=job.spec, schema=job.schema,
                                   eval_sets=job.teacher_sets, shadow_ids=shadow_ids, on_model=on_epoch,
                                   checkpoint=checkpoint, recipe=job.recipe)
    return out


def train_students(job: ShadowJob, teacher_out: Logits, shadow_ids: Sequence[int] | None = None, *,
                   on_epoch: Callable[[int], None] | None = None, checkpoint: Checkpoint | None = None) -> Logits:
    """Release each shadow teacher's labels and distill its student; logits on ``job.eval_sets``.

    With ``job.recipe == "both"`` the plain teachers (``PLAIN`` logits) are released and
    distilled too, without checkpoint selection: a second student training.

    Args:
        teacher_out: the logits of the teachers ``shadow_ids`` (default all S), in that order.
    """
    if job.spec.teacher.split_ai is not None and job.spec.teacher.split_ai.self_distill:  # own inputs per shadow
        from distillguard.audit.split_ai_shadows import train_self_distilled_students

        return train_self_distilled_students(job, teacher_out, shadow_ids, on_epoch=on_epoch, checkpoint=checkpoint)

    def distill(transfer_logits: np.ndarray, select: bool, slot: Checkpoint | None) -> Logits:
        releases = replay_releases(transfer_logits, transfer_X=job.transfer_X, pool=job.pool, canaries=job.canaries,
                                   membership=job.membership, spec=job.spec, shadow_ids=shadow_ids,
                                   per_shadow=job.per_shadow_transfer)
        return train_shadow_students(releases, transfer_X=job.transfer_X, spec=job.spec, schema=job.schema,
                                     eval_sets=job.eval_sets, shadow_ids=shadow_ids, on_model=on_epoch,
                                     checkpoint=slot, transfer_blocks=job.transfer_blocks, select=select)

    out = distill(teacher_out["transfer"], job.recipe != "plain", checkpoint)
    if job.recipe == "both":
        plain = distill(teacher_out[PLAIN + "transfer"], False, checkpoint.child("plain") if checkpoint else None)
        out.update({PLAIN + name: z for name, z in plain.items()})
    return out


def train_pate(job: ShadowJob, shadow_ids: Sequence[int] | None = None, *,
               on_teacher_epoch: Callable[[int], None] | None = None,
               on_student_epoch: Callable[[int], None] | None = None,
               checkpoint: Checkpoint | None = None) -> tuple[Logits, Logits]:
    """PATE shadows: ensembles, noisy votes and students in one go (the votes need the members)."""
    from distillguard.audit.pate_shadows import train_pate_shadows

    return train_pate_shadows(job.pool, job.canaries, job.membership, spec=job.spec, schema=job.schema,
                              transfer_X=job.transfer_X, eval_sets=job.eval_sets, shadow_ids=shadow_ids,
                              on_teacher_epoch=on_teacher_epoch, on_student_epoch=on_student_epoch,
                              checkpoint=checkpoint)


def replay_shadows(job: ShadowJob, shadow_ids: Sequence[int], *, teacher_out: Logits | None = None,
                   checkpoint: Callable[[str], Checkpoint | None] = lambda name: None) -> tuple[Logits, Logits]:
    """The whole replay of shadows ``shadow_ids``: (teacher logits, student logits).

    ``teacher_out``, these shadows' teacher logits when already known (the tuner's cache),
    skips training the teachers. PATE shadows always train theirs: the votes need them.
    ``checkpoint`` maps a step ("pate-shadows", "shadow-teachers", "shadow-students") to
    where it keeps resumable state (default: nowhere).
    """
    if job.spec.privacy.mechanism == "pate":
        return train_pate(job, shadow_ids, checkpoint=checkpoint("pate-shadows"))
    if teacher_out is None:
        teacher_out = train_teachers(job, shadow_ids, checkpoint=checkpoint("shadow-teachers"))
    return teacher_out, train_students(job, teacher_out, shadow_ids, checkpoint=checkpoint("shadow-students"))
