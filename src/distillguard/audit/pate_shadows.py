"""Shadow pipelines that replay PATE: teacher ensembles, noisy votes, students on the labels.

Attacks on a PATE student must be calibrated on PATE students, so each shadow replays
the whole mechanism on its half of the audit pool (plus its canary slots): the half is
split into ``[privacy].teachers`` disjoint partitions, one teacher per partition, the
ensemble votes on the transfer inputs, GNMax (or Confident-GNMax) adds its seeded noise,
and a student learns the answered queries' noisy labels with cross-entropy.

All S·T shadow teachers train at once (:func:`distillguard.train.pate.fit_partitions`),
and the students do too, one batched group per distinct number of answered queries
(every shadow with plain GNMax answers all of them, so there is one group). The shadow
"teacher" is the ensemble's averaged probability, as for the audited teacher. Like the
plain shadows, every function takes the absolute ids of the shadows to replay
(``shadow_ids``, default all S), so chunks of shadows can train on different machines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from distillguard.audit.shadows import AuditPool, CanarySet, _shadow_training_set, shadow_range
from distillguard.checkpoints import Checkpoint
from distillguard.config import Spec
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema
from distillguard.models.classifiers import model_arch
from distillguard.privacy.aggregation import aggregate, vote_counts
from distillguard.seeding import derive_seed
from distillguard.train.batched import fit_many, predict_many
from distillguard.train.loop import Recipe, accuracy
from distillguard.train.pate import fit_partitions, partition_rows
from distillguard.train.teacher import model_architecture, teacher_loss, validation_rows


def train_shadow_ensembles(pool: AuditPool, canaries: CanarySet | None, membership: np.ndarray, *, spec: Spec,
                           schema: Schema, n_teachers: int, transfer_X: np.ndarray, eval_sets: dict[str, np.ndarray],
                           shadow_ids: Sequence[int] | None = None, on_epoch=None, checkpoint: Checkpoint | None = None):
    """Each shadow's teacher ensemble: ``n_teachers`` models on disjoint partitions of its half.

    Replays :func:`distillguard.train.pate.train_teacher_ensemble` (public scaler, last
    epoch kept) for PATE and for the non-private ``[teacher] ensemble``.

    Returns:
        (teacher_out, states, scaler, arch): ``teacher_out`` maps each eval set to (S', n, C)
        for the S' shadows ``shadow_ids`` (default all), the log of each shadow ensemble's
        averaged probabilities; ``states`` holds the S'·T member models, shadow-major.
    """
    ids, seed, T = shadow_range(membership, shadow_ids), spec.run.seed, n_teachers
    scaler = Standardizer.fit(transfer_X)  # as the real ensemble: public statistics
    teacher_X, teacher_y, parts = [], [], []
    offset = 0
    for s in ids:
        X, y, _, _ = _shadow_training_set(s, pool, canaries, membership, val_fraction=0.0, seed=seed)
        teacher_X.append(scaler.transform(X))
        teacher_y.append(y.astype(np.int64))
        parts += [offset + p for p in partition_rows(len(X), T, seed=derive_seed(seed, "shadow", s, "pate", "partition"))]
        offset += len(X)
    arch = model_architecture(spec.teacher, schema)
    states = fit_partitions(
        arch, torch.from_numpy(np.concatenate(teacher_X)), torch.from_numpy(np.concatenate(teacher_y)), parts,
        recipe=Recipe.from_config(spec.teacher), loss_fn=teacher_loss(spec.teacher),
        seeds=[derive_seed(seed, "shadow", s, "pate", t) for s in ids for t in range(T)],
        batched=None if spec.audit.batched else False, on_epoch=on_epoch,
        checkpoint=checkpoint.child("teachers") if checkpoint is not None else None)
    teacher_out: dict[str, list] = {name: [] for name in eval_sets}
    scaled_eval = {name: torch.from_numpy(scaler.transform(X)) for name, X in eval_sets.items()}
    for i in range(len(ids)):
        ensemble = states[i * T:(i + 1) * T]
        for name, X in scaled_eval.items():
            logits = predict_many(arch, ensemble, X).double()  # (T, n, C)
            teacher_out[name].append((torch.logsumexp(torch.log_softmax(logits, -1), 0) - np.log(T)).numpy())
    return {name: np.stack(v) for name, v in teacher_out.items()}, states, scaler, arch


def train_pate_shadows(pool: AuditPool, canaries: CanarySet | None, membership: np.ndarray, *, spec: Spec,
                       schema: Schema, transfer_X: np.ndarray, eval_sets: dict[str, np.ndarray],
                       shadow_ids: Sequence[int] | None = None, on_teacher_epoch=None, on_student_epoch=None,
                       checkpoint: Checkpoint | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Replay PATE once per shadow.

    Args:
        membership: (S, n_pool) bool, which pool records each shadow trains on.
        transfer_X: (q, d) the transfer rows the real ensemble was queried on.
        eval_sets: name -> (n, d) raw rows to score (pool, population, canaries).
        shadow_ids: the shadows to replay (default all S).

    Returns:
        (teacher_out, student_out): name -> (len(shadow_ids), n, C) logits; the teachers'
        are the log of each shadow ensemble's averaged probabilities.
    """
    ids, privacy, seed = shadow_range(membership, shadow_ids), spec.privacy, spec.run.seed
    T = privacy.teachers
    teacher_out, states, scaler, arch = train_shadow_ensembles(
        pool, canaries, membership, spec=spec, schema=schema, n_teachers=T, transfer_X=transfer_X,
        eval_sets=eval_sets, shadow_ids=ids, on_epoch=on_teacher_epoch, checkpoint=checkpoint)
    labels, answered = [], []
    scaled_transfer = torch.from_numpy(scaler.transform(transfer_X))
    for i, s in enumerate(ids):
        votes = vote_counts(predict_many(arch, states[i * T:(i + 1) * T], scaled_transfer).argmax(-1).numpy(),
                            schema.n_classes)
        got, mask = aggregate(votes, sigma=privacy.sigma, threshold=privacy.threshold,
                              sigma_threshold=privacy.sigma_threshold,
                              rng=np.random.default_rng(derive_seed(seed, "shadow", s, "pate", "noise")))
        labels.append(got)
        answered.append(mask)
    student_out = _train_label_students(transfer_X, labels, answered, spec=spec, schema=schema, eval_sets=eval_sets,
                                        shadow_ids=ids, on_epoch=on_student_epoch,
                                        checkpoint=checkpoint.child("students") if checkpoint is not None else None)
    return teacher_out, student_out


def _train_label_students(transfer_X: np.ndarray, labels: list[np.ndarray], answered: list[np.ndarray], *, spec: Spec,
                          schema: Schema, eval_sets: dict[str, np.ndarray], shadow_ids: list[int], on_epoch=None,
                          checkpoint: Checkpoint | None = None) -> dict[str, np.ndarray]:
    """One student per shadow on its answered queries, as ``train_student_on_labels`` trains the real one.

    Each student has its own scaler (fitted on its own training rows, as the real one),
    so every shadow's inputs are scaled separately and stacked. ``labels[i]`` and
    ``answered[i]`` belong to shadow ``shadow_ids[i]``, whose seed its student takes.
    """
    S, cfg, seed = len(labels), spec.student, spec.run.seed
    arch = model_arch(cfg, schema)
    blocks, targets, scalers, splits = [], [], [], []
    for s in range(S):
        X = transfer_X[answered[s]]
        train_rows, val_rows = validation_rows(len(X), fraction=cfg.val_fraction, seed=derive_seed(seed, "student"))
        scaler = Standardizer.fit(X[train_rows])
        scalers.append(scaler)
        blocks.append(scaler.transform(X))
        targets.append(labels[s][answered[s]])
        splits.append((train_rows, val_rows))
    starts = np.cumsum([0] + [len(b) for b in blocks])
    X_all = torch.from_numpy(np.concatenate(blocks))
    y_all = torch.from_numpy(np.concatenate(targets).astype(np.int64))
    states: list = [None] * S
    for size in sorted({len(b) for b in blocks}):
        which = [s for s in range(S) if len(blocks[s]) == size]
        rows = torch.from_numpy(np.stack([starts[s] + splits[s][0] for s in which]).astype(np.int64))
        has_val = len(splits[which[0]][1]) > 0
        val = torch.from_numpy(np.stack([starts[s] + splits[s][1] for s in which]).astype(np.int64)) if has_val else None
        group = fit_many(arch, X_all, y_all, rows=rows, val_rows=val, loss_fn=F.cross_entropy,
                         recipe=Recipe.from_config(cfg),
                         seeds=[derive_seed(seed, "shadow", shadow_ids[s], "student") for s in which],
                         metric=accuracy if has_val else None, batched=None if spec.audit.batched else False,
                         on_epoch=on_epoch if size == max(len(b) for b in blocks) else None,
                         checkpoint=checkpoint.child(f"size{size}") if checkpoint is not None else None)
        for s, state in zip(which, group):
            states[s] = state
    return {name: np.stack([predict_many(arch, [states[s]], torch.from_numpy(scalers[s].transform(X)))[0].double().numpy()
                            for s in range(S)])
            for name, X in eval_sets.items()}
