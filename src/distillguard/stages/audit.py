"""Stage 4: utility and membership inference, teacher vs student, into audit/.

Writes ``metrics.json`` (every number the report shows), ``scores.parquet`` (one row per
record, target and attack, so each number can be recomputed) and ROC plots. The audit
pool is the teacher's *trained* members (its validation slice was never trained on) and
as many nonmembers. Shadow pipelines replay teacher training *and* distillation, so
attacks on the student are calibrated on students; canaries live only in the shadows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard import distributed, progress
from distillguard.attack_names import strongest_attack
from distillguard.checkpoints import CheckpointStore, failpoint
from distillguard.audit import shadow_cache
from distillguard.audit.empirical_epsilon import one_run_epsilon
from distillguard.audit.exchangeability import exchangeability_check
from distillguard.audit.membership import score_canaries_leave_one_out, score_targets
from distillguard.audit.metrics import roc, summarize
from distillguard.audit.pipelines import ShadowJob, replay_shadows, train_pate, train_students, train_teachers
from distillguard.audit.shadows import (AuditPool, CanarySet, ShadowLogits, build_pool, paired_membership,
                                        plant_canaries)
from distillguard.audit.signals import ReferenceSignals, TargetSignals
from distillguard.audit.utility import accuracy, agreement, mean_cross_entropy
from distillguard.config import Spec
from distillguard.data import data_fingerprint, load_members, load_role, shard_numbers
from distillguard.models.artifact import Classifier, load_classifier
from distillguard.report.plots import save_roc_plot
from distillguard.runs import RunDir, atomic_write_json, read_json
from distillguard.seeding import derive_seed
from distillguard.stages.common import checkpoint_store, execute_stage
from distillguard.stages.label import read_query_ids

OUTPUT = "audit"
TARGETS = ("teacher", "student")
FPRS = ("0.01", "0.001", "0")
EPSILON_DELTA = 1e-5


@dataclass
class ScoreRows:
    """Columns of scores.parquet (CONTRACT.md), filled attack by attack."""

    columns: dict[str, list] = field(default_factory=lambda: {
        k: [] for k in ("example_id", "target", "attack", "score", "is_member", "is_canary")})

    def add(self, ids: list[str], target: str, attack: str, scores: np.ndarray, is_member: np.ndarray, canary: bool) -> None:
        self.columns["example_id"] += ids
        self.columns["target"] += [target] * len(ids)
        self.columns["attack"] += [attack] * len(ids)
        self.columns["score"] += np.asarray(scores, dtype=float).tolist()
        self.columns["is_member"] += np.asarray(is_member, dtype=bool).tolist()
        self.columns["is_canary"] += [canary] * len(ids)


@dataclass(frozen=True)
class Shadows:
    membership: np.ndarray  # (S, n_pool) bool
    canaries: CanarySet | None
    logits: dict[str, ShadowLogits]  # "teacher" / "student"


def run_audit_stage(spec: Spec, run: RunDir) -> bool:
    inputs = {
        rel: run.output_hash(stage, rel)
        for stage, rel in [("teacher", "teacher/model.safetensors"), ("teacher", "teacher/config.json"),
                           ("teacher", "teacher/split.json"), ("distill", "student/model.safetensors"),
                           ("distill", "student/config.json")]
    }
    inputs.update({f"data.{role}": data_fingerprint(spec.data, role) for role in ("members", "nonmembers", "transfer", "test")})
    params = {"audit": spec.audit.fingerprint_params(), "data": spec.data.fingerprint_params(), "seed": spec.run.seed,
              "teacher": spec.section_dict("teacher"), "student": spec.section_dict("student"),
              "distill": spec.section_dict("distill"), "softlabels": spec.section_dict("softlabels"),
              "transfer": spec.section_dict("transfer")}
    if spec.privacy.mechanism == "pate":  # the shadows replay the votes' noise and threshold
        params["privacy"] = spec.section_dict("privacy")
    if spec.audit.shadows:  # the shadows replay the release from the recorded queries
        inputs.update({rel: run.output_hash("label", rel) for rel in ("softlabels/meta.json", "softlabels/queries.parquet")})
        if shard_numbers(read_query_ids(run / "softlabels"), spec.run.shard_rows) is not None:
            params["shard_rows"] = spec.run.shard_rows  # the shadow students replay the student's blocks

    checkpoints = checkpoint_store(spec, run, "audit")

    def build(folder: Path) -> dict:
        os.chmod(folder, 0o700)  # per-record scores reveal who was a member
        metrics, rows, curves = audit_models(spec, run, checkpoints=checkpoints)
        pq.write_table(pa.table(rows.columns), folder / "scores.parquet")
        for attack, by_target in curves.items():
            save_roc_plot(by_target, folder / f"roc_{attack}.png", title=f"{attack}: teacher vs student")
        atomic_write_json(folder / "metrics.json", metrics)
        return {"n_pool": metrics["populations"]["all"]["n_members"] * 2, "shadows": spec.audit.shadows}

    return execute_stage(run, "audit", params=params, inputs=inputs, output=OUTPUT, build=build,
                         checkpoints=checkpoints)


def audit_models(spec: Spec, run: RunDir, *, checkpoints: CheckpointStore | None = None
                 ) -> tuple[dict, ScoreRows, dict]:
    """Every number of the audit, the per-record scores, and ROC curves."""
    seed, cfg = spec.run.seed, spec.audit
    models = {name: load_classifier(run / name)[0] for name in TARGETS}
    schema, members = load_members(spec.data, seed=seed)
    nonmembers = load_role(spec.data, "nonmembers", schema=schema, seed=seed)
    test = load_role(spec.data, "test", schema=schema, seed=seed)
    trained = np.asarray(read_json(run / "teacher" / "split.json")["train_ids"], dtype=np.int64)
    members = members.subset(np.flatnonzero(np.isin(members.ids, trained)))
    pool = build_pool(members, nonmembers, seed=seed)

    metrics: dict = {"utility": utility(models, test.X, test.y), "warnings": []}
    metrics["exchangeability"], warning = exchangeability_check(pool.X, pool.is_member, seed=seed)
    if warning:
        metrics["warnings"].append(warning)
    shadows = None
    if cfg.shadows:
        transfer = load_role(spec.data, "transfer", schema=schema, seed=seed)
        kept_ids = read_query_ids(run / "softlabels")  # every record the teacher was asked (the guard's survivors)
        transfer = transfer.subset(np.flatnonzero(np.isin(transfer.ids, kept_ids)))
        shadows = train_shadows(spec, schema=schema, pool=pool, transfer_X=transfer.X, population_X=test.X,
                                checkpoints=checkpoints,
                                transfer_blocks=shard_numbers(transfer.ids, spec.run.shard_rows))
        failpoint("audit/shadows-trained")

    rows, results, curves, epsilons = ScoreRows(), [], {}, []
    for target, clf in models.items():
        signals = TargetSignals(clf.logits(pool.X), pool.y, clf.logits(test.X), test.y)
        reference = None
        if shadows is not None:
            reference = ReferenceSignals(shadows.logits[target].pool, shadows.membership, pool.y,
                                         shadows.logits[target].population, test.y)
        for name, scores in score_targets(cfg.attacks, cfg, signals, reference).items():
            results.append(_summary(spec, scores, pool.is_member, target, name, "all"))
            rows.add(pool.example_ids, target, name, scores, pool.is_member, canary=False)
            curves.setdefault(name, {})[target] = roc(scores, pool.is_member)
        if shadows is not None and shadows.canaries is not None:
            eps = _audit_canaries(spec, target, shadows, test.y, rows, results, curves)
            epsilons.append(eps)
    metrics["attacks"] = results
    metrics["populations"] = {"all": {"n_members": int(pool.is_member.sum()), "n_nonmembers": int((~pool.is_member).sum())}}
    if shadows is not None:
        replay = ("PATE: teachers on partitions of each shadow's half + noisy votes + student on the noisy labels"
                  if spec.privacy.mechanism == "pate" else "teacher training + labeling + distillation")
        metrics["shadows"] = {"count": cfg.shadows, "replay": replay,
                              "canaries": 0 if shadows.canaries is None else len(shadows.canaries)}
    if epsilons:
        metrics["empirical_epsilon"] = {**next(e for e in epsilons if e["target"] == "student"), "by_target": epsilons}
    return metrics, rows, curves


def _summary(spec: Spec, scores, is_member, target: str, attack: str, population: str) -> dict:
    summary = summarize(scores, is_member, fprs=FPRS, n_bootstrap=spec.audit.bootstrap, confidence=spec.audit.confidence,
                        seed=derive_seed(spec.run.seed, "bootstrap", target, attack, population))
    return {"attack": attack, "target": target, "population": population, **summary.to_dict()}


def _audit_canaries(spec: Spec, target: str, shadows: Shadows, population_labels, rows: ScoreRows,
                    results: list, curves: dict) -> dict:
    """Canary metrics over held-out replicas, and the one-run ε bound on replica 0."""
    canaries, logits = shadows.canaries, shadows.logits[target]
    S, K = canaries.included.shape
    scored = score_canaries_leave_one_out(
        spec.audit.attacks, spec.audit, logits=logits.canaries, labels=canaries.y, included=canaries.included,
        population_logits=logits.population, population_labels=population_labels,
    )
    ids = [f"canary:{k}@replica{s}" for s in range(S) for k in range(K)]
    for name, (scores, included) in scored.items():
        results.append(_summary(spec, scores, included, target, name, "canaries"))
        rows.add(ids, target, name, scores, included, canary=True)
        curves[name][f"{target} (canaries)"] = roc(scores, included)
    attack = strongest_attack(scored, down_to="loss") or spec.audit.attacks[0]
    eps = one_run_epsilon(
        attack, spec.audit, logits=logits.canaries, labels=canaries.y, included=canaries.included,
        audited_scores=scored[attack][0][:K], population_logits=logits.population,
        population_labels=population_labels, delta=EPSILON_DELTA,
    )
    return {"target": target, "replica": 0, **eps}


def train_shadows(spec: Spec, *, schema, pool: AuditPool, transfer_X: np.ndarray, population_X: np.ndarray,
                  checkpoints: CheckpointStore | None = None, transfer_blocks: np.ndarray | None = None) -> Shadows:
    """Replay teacher training, labeling and distillation ``[audit].shadows`` times.

    ``[audit].backend`` says where: in this process, or one Ray task per chunk of shadows
    (audit/ray_backend.py); under torchrun, each rank trains a contiguous share of the
    shadows. All give the same logits, so the rest of the audit cannot tell.
    """
    cfg, seed = spec.audit, spec.run.seed
    membership = paired_membership(len(pool.X), cfg.shadows, seed=seed)
    canaries = None
    if cfg.canaries:
        canaries = plant_canaries(pool.X, n_classes=schema.n_classes, count=cfg.canaries,
                                  duplicates=cfg.canary_duplicates, n_shadows=cfg.shadows, seed=seed)
    eval_sets = {"pool": pool.X, "population": population_X}
    if canaries is not None:
        eval_sets["canaries"] = canaries.X
    job = ShadowJob(spec, schema, pool, canaries, membership, transfer_X, eval_sets, transfer_blocks)
    if cfg.backend == "ray":
        train = _train_on_ray
    else:
        train = _train_on_ranks if distributed.world().size > 1 else _train_locally
    teacher_out, student_out = train(job, checkpoints)
    return _shadow_logits(membership, canaries, teacher_out, student_out, n_classes=schema.n_classes)


def _teacher_cache_key(job: ShadowJob) -> str:
    """What the shadow teachers depend on (audit/shadow_cache.py); PATE shadows are not cached."""
    spec, canaries = job.spec, job.canaries
    return shadow_cache.cache_key(
        arrays={"pool.X": job.pool.X, "pool.y": job.pool.y, "membership": job.membership,
                **{f"eval.{k}": v for k, v in job.teacher_sets.items()},
                **({f"canaries.{k}": getattr(canaries, k) for k in ("X", "y", "decoy_X", "decoy_y", "repeats", "included")}
                   if canaries is not None else {})},
        params={"teacher": spec.section_dict("teacher"), "privacy": spec.section_dict("privacy"), "seed": spec.run.seed,
                "batched": spec.audit.batched, "schema": job.schema.to_dict()})


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
        progress.log(f"audit: {S} shadow teachers reused from the search's cache")
    with progress.task(f"audit: {S} shadow students", spec.student.epochs) as advance:
        student_out = train_students(job, teacher_out, on_epoch=lambda e: advance(1),
                                     checkpoint=checkpoints.slot("shadow-students") if checkpoints else None)
    return teacher_out, student_out


def _train_teachers_locally(job: ShadowJob, checkpoints: CheckpointStore | None) -> dict:
    """Plain and DP-SGD teachers, or ``[teacher] ensemble``s on partitions of each shadow's half."""
    spec, S, n = job.spec, job.n_shadows, job.spec.teacher.ensemble
    if n > 1:
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
    """One Ray task per chunk of shadows (audit/ray_backend.py); the tuner's teacher cache still applies."""
    from distillguard.audit.ray_backend import train_shadows_on_ray

    cfg, S = job.spec.audit, job.n_shadows
    key = None if job.spec.privacy.mechanism == "pate" else _teacher_cache_key(job)
    cached = shadow_cache.load(key) if key is not None else None
    if cached is not None:
        progress.log(f"audit: {S} shadow teachers reused from the search's cache")
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


def _shadow_logits(membership: np.ndarray, canaries: CanarySet | None, teacher_out: dict, student_out: dict, *,
                   n_classes: int) -> Shadows:
    empty = np.zeros((len(membership), 0, n_classes))
    logits = {
        kind: ShadowLogits(out["pool"], out["population"], out["canaries"] if canaries is not None else empty)
        for kind, out in (("teacher", teacher_out), ("student", student_out))
    }
    return Shadows(membership, canaries, logits)


def utility(models: dict[str, Classifier], X: np.ndarray, y: np.ndarray) -> dict:
    logits = {name: clf.logits(X) for name, clf in models.items()}
    out = {name: {"test_accuracy": accuracy(z, y), "test_loss": mean_cross_entropy(z, y)} for name, z in logits.items()}
    out["accuracy_gap"] = out["teacher"]["test_accuracy"] - out["student"]["test_accuracy"]
    out["agreement"] = agreement(logits["teacher"], logits["student"])
    out["n_test"] = int(len(y))
    return out
