"""Student training from stored teacher logits: pure, and blind by construction.

:func:`train_student` takes the transfer inputs and the teacher's logits on them, and
nothing else: there is no argument through which member data could arrive.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from distillguard.checkpoints import Checkpoint
from distillguard.config import DistillConfig, StudentConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema
from distillguard.models.artifact import Classifier
from distillguard.models.classifiers import architecture, build_model
from distillguard.seeding import derive_seed
from distillguard.train.kd import kd_loss
from distillguard.train.loop import Recipe, accuracy, fit
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
) -> tuple[Classifier, list[dict]]:
    """Distill a student from (transfer inputs, teacher logits at T=1).

    Args:
        transfer_X: (n, d) raw transfer features.
        teacher_logits: (n, C) stored teacher logits; the temperature is applied here.

    Checkpoints are selected on a held-out slice of the transfer set by the same KD
    objective (public data only). The student's scaler is fitted on transfer inputs.
    """
    objective = distill_objective(distill)
    return _fit_student(transfer_X, torch.from_numpy(np.asarray(teacher_logits, dtype=np.float32)), schema=schema,
                        cfg=cfg, seed=seed, objective=objective, metric=lambda logits, t: -float(objective(logits, t)),
                        on_epoch=on_epoch, checkpoint=checkpoint)


def train_student_on_labels(
    transfer_X: np.ndarray,
    labels: np.ndarray,
    *,
    schema: Schema,
    cfg: StudentConfig,
    seed: int,
    on_epoch=None,
    checkpoint: Checkpoint | None = None,
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
    return _fit_student(transfer_X, torch.from_numpy(labels.astype(np.int64)), schema=schema, cfg=cfg, seed=seed,
                        objective=F.cross_entropy, metric=accuracy, on_epoch=on_epoch, checkpoint=checkpoint)


def _fit_student(transfer_X: np.ndarray, targets: torch.Tensor, *, schema: Schema, cfg: StudentConfig, seed: int,
                 objective, metric, on_epoch, checkpoint: Checkpoint | None) -> tuple[Classifier, list[dict]]:
    train_rows, val_rows = validation_rows(len(transfer_X), fraction=cfg.val_fraction, seed=derive_seed(seed, "student"))
    scaler = Standardizer.fit(transfer_X[train_rows])
    X = torch.from_numpy(scaler.transform(transfer_X))
    arch = architecture(kind=cfg.kind, input_shape=schema.input_shape, n_classes=schema.n_classes,
                        hidden=cfg.hidden, channels=cfg.channels)
    model = build_model(arch, seed=derive_seed(seed, "student", "init"))
    validation = (X[val_rows], targets[val_rows]) if len(val_rows) else None
    model, log = fit(
        model, X[train_rows], targets[train_rows], loss_fn=objective, recipe=Recipe.from_config(cfg),
        seed=derive_seed(seed, "student", "batches"), validation=validation,
        metric=metric, on_epoch=on_epoch, checkpoint=checkpoint,
    )
    return Classifier(model, arch, schema, scaler), log
