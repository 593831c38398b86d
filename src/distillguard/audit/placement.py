"""Where the audit's shadow pipelines run: in this process, on torchrun ranks, or on Ray.

``[audit].backend`` picks Ray (one task per chunk of shadows, audit/ray_backend.py);
otherwise the shadows run in this process, or, under torchrun, each rank replays a
contiguous share of them. Every placement returns the same logits (shadows are
independent given their index, audit/pipelines.py), so the rest of the audit cannot tell
where they ran. Shadow teachers an earlier audit of the same teacher recipe and data
already trained (this run's, or the tuning search's) are reused from the cache
(audit/shadow_cache.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillguard import distributed, progress
from distillguard.audit import shadow_cache
from distillguard.audit.pipelines import ShadowJob, replay_shadows, train_pate, train_students, train_teachers
from distillguard.audit.shadow_recipes import PLAIN, shadow_recipe
from distillguard.audit.shadows import AuditPool, CanarySet, ShadowLogits, paired_membership, plant_canaries
from distillguard.checkpoints import CheckpointStore
from distillguard.config import Spec
from distillguard.train import batched


@dataclass(frozen=True)
class Shadows:
    """What the attacks are calibrated on: who each shadow trained on, its canaries, its logits.

    ``recipe`` is how ``logits`` were trained ("replay" or "plain", audit/shadows.py);
    ``plain``, with ``[audit] shadow_recipe = "auto"``, the plain recipe's logits beside
    the replay's, for the audit to choose between per target.
    """

    membership: np.ndarray  # (S, n_pool) bool
    canaries: CanarySet | None
    logits: dict[str, ShadowLogits]  # "teacher" / "student"
    recipe: str = "replay"
    plain: dict[str, ShadowLogits] | None = None

    def variants(self, target: str) -> dict[str, ShadowLogits]:
        """recipe -> this target's shadow logits trained that way ("replay" first)."""
        out = {self.recipe: self.logits[target]}
        if self.plain is not None and target in self.plain:
            out["plain"] = self.plain[target]
        return out


def train_shadows(spec: Spec, *, schema, pool: AuditPool, transfer_X: np.ndarray, population_X: np.ndarray,
                  checkpoints: CheckpointStore | None = None, transfer_blocks: np.ndarray | None = None,
                  population_y: np.ndarray | None = None, teachers_only: bool = False,
                  extra_sets: dict[str, np.ndarray] | None = None) -> Shadows:
    """Replay teacher training, labeling and distillation ``[audit].shadows`` times.

    ``extra_sets`` (name -> raw rows) are more rows every shadow is read on, beside the pool,
    the population and the canaries; their logits are in ``ShadowLogits.extra``.

    ``[audit].backend`` says where: in this process, or one Ray task per chunk of shadows
    (audit/ray_backend.py); under torchrun, each rank trains a contiguous share of the
    shadows. All give the same logits, so the rest of the audit cannot tell.
    ``teachers_only`` (``distillguard scan``, whose model is a teacher) replays teacher
    training alone, in this process; the shadow teachers are those a full replay trains.
    """
    cfg, seed = spec.audit, spec.run.seed
    membership = paired_membership(len(pool.X), cfg.shadows, seed=seed)
    canaries = None
    if cfg.canaries:
        canaries = plant_canaries(pool.X, n_classes=schema.n_classes, count=cfg.canaries,
                                  duplicates=cfg.canary_duplicates, n_shadows=cfg.shadows, seed=seed,
                                  kind=cfg.canary_kind if population_y is not None else "ood",
                                  source_X=population_X, source_y=population_y)
    eval_sets = {"pool": pool.X, "population": population_X}
    if canaries is not None:
        eval_sets["canaries"] = canaries.X
    eval_sets.update(extra_sets or {})
    per_shadow = None
    if spec.transfer.synthetic is not None and not teachers_only:  # each shadow fits its own generator
        from distillguard.audit.synthetic_shadows import shadow_synthetic_transfer

        transfer_X = shadow_synthetic_transfer(pool, canaries, membership, spec=spec, schema=schema)
        per_shadow, transfer_blocks = spec.transfer.synthetic.rows, None
    recipe = "replay" if teachers_only else shadow_recipe(spec)  # scan: its model's recipe is not the spec's
    job = ShadowJob(spec, schema, pool, canaries, membership, transfer_X, eval_sets, transfer_blocks,
                    recipe=recipe, per_shadow_transfer=per_shadow)
    if teachers_only:
        return _shadow_logits(membership, canaries, _train_teachers_locally(job, checkpoints), None,
                              n_classes=schema.n_classes, extra=list(extra_sets or {}), recipe=recipe)
    if cfg.backend == "ray":
        train = _train_on_ray
    else:
        train = _train_on_ranks if distributed.world().size > 1 else _train_locally
    teacher_out, student_out = train(job, checkpoints)
    return _shadow_logits(membership, canaries, teacher_out, student_out, n_classes=schema.n_classes,
                          extra=list(extra_sets or {}), recipe=recipe)


def _teacher_cache_key(job: ShadowJob) -> str:
    """What the shadow teachers depend on (audit/shadow_cache.py); PATE shadows are not cached."""
    spec, canaries = job.spec, job.canaries
    return shadow_cache.cache_key(
        arrays={"pool.X": job.pool.X, "pool.y": job.pool.y, "membership": job.membership,
                **{f"eval.{k}": v for k, v in job.teacher_sets.items()},
                **({f"canaries.{k}": getattr(canaries, k) for k in ("X", "y", "decoy_X", "decoy_y", "repeats", "included")}
                   if canaries is not None else {})},
        params={"teacher": spec.section_dict("teacher"), "privacy": spec.section_dict("privacy"), "seed": spec.run.seed,
                "batched": spec.audit.batched, "fast": batched.FAST, "schema": job.schema.to_dict(),
                **({"recipe": job.recipe} if job.recipe != "replay" else {})})


def _train_locally(job: ShadowJob, checkpoints: CheckpointStore | None) -> tuple[dict, dict]:
    """All S shadows in this process, batched, with progress bars and checkpoints."""
    spec, S = job.spec, job.n_shadows
    if spec.privacy.mechanism == "pate":
        return _train_pate_shadows(job, checkpoints)
    key = _teacher_cache_key(job)
    teacher_out = shadow_cache.load(key)
    if teacher_out is None:
        teacher_out = _train_teachers_locally(job, checkpoints)
        shadow_cache.store(key, teacher_out)
    else:
        progress.log(f"audit: {S} shadow teachers reused from the shadow-teacher cache")
    trainings = 2 if job.recipe == "both" else 1  # "both": the plain teachers' students too
    with progress.task(f"audit: {S * trainings} shadow students", spec.student.epochs * trainings) as advance:
        student_out = train_students(job, teacher_out, on_epoch=lambda e: advance(1),
                                     checkpoint=checkpoints.slot("shadow-students") if checkpoints else None)
    return teacher_out, student_out


def _train_teachers_locally(job: ShadowJob, checkpoints: CheckpointStore | None) -> dict:
    """Plain and DP-SGD teachers, or ``[teacher] ensemble``s on partitions of each shadow's half."""
    spec, S, n = job.spec, job.n_shadows, job.spec.teacher.ensemble
    if spec.teacher.split_ai is not None:  # sub-teacher sizes vary with canary copies: no fixed step count
        steps, slot = None, "split-ai-shadows"
        description = f"audit: {S}×{spec.teacher.split_ai.k} shadow Split-AI sub-teachers"
    elif n > 1:
        steps = spec.teacher.epochs * _groups(job, n)
        description, slot = f"audit: {S}×{n} shadow ensemble teachers", "ensemble-shadows"
    else:  # batched shadows report once per epoch; DP-SGD shadows (looped) once per model
        steps = S if spec.privacy.mechanism == "dp-sgd" else spec.teacher.epochs
        description, slot = f"audit: {S} shadow teachers", "shadow-teachers"
    with progress.task(description, steps) as advance:
        return train_teachers(job, on_epoch=lambda e: advance(1),
                              checkpoint=checkpoints.slot(slot) if checkpoints else None)


def _groups(job: ShadowJob, n_teachers: int) -> int:
    """Batched groups per ensemble (partitions of one or two sizes), for the progress bar's length."""
    from distillguard.train.pate import partition_groups

    canary_rows = int(job.canaries.repeats.sum()) if job.canaries is not None else 0
    return partition_groups(int(job.membership[0].sum()) + canary_rows, n_teachers)


def _train_pate_shadows(job: ShadowJob, checkpoints: CheckpointStore | None) -> tuple[dict, dict]:
    """PATE shadows: ensembles on partitions, noisy votes, students on labels (audit/pate_shadows.py)."""
    spec, S = job.spec, job.n_shadows
    with progress.task(f"audit: {S}×{spec.privacy.teachers} PATE shadow teachers, then students",
                       spec.teacher.epochs * _groups(job, spec.privacy.teachers) + spec.student.epochs) as advance:
        return train_pate(job, on_teacher_epoch=lambda e: advance(1), on_student_epoch=lambda e: advance(1),
                          checkpoint=checkpoints.slot("pate-shadows") if checkpoints else None)


def _train_on_ray(job: ShadowJob, checkpoints: CheckpointStore | None) -> tuple[dict, dict]:
    """One Ray task per chunk of shadows (audit/ray_backend.py); the shadow-teacher cache still applies."""
    from distillguard.audit.ray_backend import train_shadows_on_ray

    cfg, S = job.spec.audit, job.n_shadows
    key = None if job.spec.privacy.mechanism == "pate" else _teacher_cache_key(job)
    cached = shadow_cache.load(key) if key is not None else None
    if cached is not None:
        progress.log(f"audit: {S} shadow teachers reused from the shadow-teacher cache")
    tasks = -(-S // cfg.ray_shadows_per_task)
    with progress.task(f"audit: {S} shadow pipelines on Ray ({tasks} tasks)", S) as advance:
        teacher_out, student_out = train_shadows_on_ray(job, teacher_out=cached, checkpoints=checkpoints,
                                                        on_chunk=advance)
    if key is not None and cached is None:
        shadow_cache.store(key, teacher_out)
    return teacher_out, student_out


def _train_on_ranks(job: ShadowJob, checkpoints: CheckpointStore | None) -> tuple[dict, dict]:
    """Under torchrun: rank r replays a contiguous share of the S shadows; every rank gets all.

    Shadows are independent given their index (audit/pipelines.py), so the shares' logits,
    stacked in rank order, are those of one process training all S. Each rank keeps its
    own mid-audit checkpoints (``…rankRofN.pt``), so a killed audit resumes on the same
    number of ranks where every rank stopped.
    """
    here, S = distributed.world(), job.n_shadows
    mine = [int(s) for s in np.array_split(np.arange(S), here.size)[here.rank]]
    slot = (lambda name: checkpoints.slot(name, rank_local=True) if checkpoints else None)  # noqa: E731
    with progress.task(f"audit: {S} shadow pipelines on {here.size} ranks ({len(mine)} on rank {here.rank})", 1) as advance:
        share = replay_shadows(job, mine, checkpoint=slot) if mine else None
        advance(1)
    shares = [part for part in distributed.gather(share) if part is not None]
    return tuple({name: np.concatenate([part[k][name] for part in shares]) for name in shares[0][k]}
                 for k in (0, 1))


def _shadow_logits(membership: np.ndarray, canaries: CanarySet | None, teacher_out: dict, student_out: dict | None,
                   *, n_classes: int, extra: list[str], recipe: str = "replay") -> Shadows:
    empty = np.zeros((len(membership), 0, n_classes))

    def variant(prefix: str) -> dict[str, ShadowLogits]:
        return {
            kind: ShadowLogits(out[prefix + "pool"], out[prefix + "population"],
                               out[prefix + "canaries"] if canaries is not None else empty,
                               {name: out[prefix + name] for name in extra})
            for kind, out in (("teacher", teacher_out), ("student", student_out)) if out is not None
        }

    if recipe == "both":
        return Shadows(membership, canaries, variant(""), "replay", variant(PLAIN))
    return Shadows(membership, canaries, variant(""), recipe)

