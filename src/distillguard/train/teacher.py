"""Teacher training on the member split: pure (data in, model out), no run-folder I/O.

A slice of the members is held out for checkpoint selection. Those records are never
trained on, so the audit must not count them as members; the split is returned so the
stage can record it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from distillguard.checkpoints import Checkpoint
from distillguard.config import TeacherConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard.models.artifact import Classifier
from distillguard.models.classifiers import build_model, model_arch
from distillguard.seeding import derive_seed
from distillguard.train.loop import Recipe, accuracy, fit


@dataclass(frozen=True)
class TeacherFit:
    classifier: Classifier
    train_rows: np.ndarray  # indices into the members split that were trained on
    val_rows: np.ndarray  # indices held out for checkpoint selection
    log: list[dict]


def validation_rows(n: int, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_rows, val_rows): a seeded random ``fraction`` of ``range(n)`` held out."""
    order = np.random.default_rng(derive_seed(seed, "validation")).permutation(n)
    n_val = int(round(fraction * n))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def model_architecture(cfg: TeacherConfig, schema: Schema) -> dict:
    return model_arch(cfg, schema)


def teacher_loss(cfg: TeacherConfig):
    """Cross-entropy, label-smoothed when the recipe asks (a regulariser against memorization), or
    HAMP's high-entropy objective with ``[teacher.hamp]`` (:mod:`distillguard.train.hamp`)."""
    if cfg.hamp is not None:
        from distillguard.train.hamp import hamp_loss

        return functools.partial(hamp_loss, gamma=cfg.hamp.gamma, alpha=cfg.hamp.alpha)
    if cfg.label_smoothing == 0.0:
        return F.cross_entropy
    return functools.partial(F.cross_entropy, label_smoothing=cfg.label_smoothing)


def train_teacher(members: Split, *, schema: Schema, cfg: TeacherConfig, seed: int, on_epoch=None,
                  checkpoint: Checkpoint | None = None) -> TeacherFit:
    """Train on the members (minus the validation slice) with cross-entropy.

    Features are standardized with statistics of the training rows only: the teacher is
    allowed to see them, and nothing else is.
    """
    train_rows, val_rows = validation_rows(len(members), fraction=cfg.val_fraction, seed=seed)
    scaler = Standardizer.fit(members.X[train_rows])
    X = torch.from_numpy(scaler.transform(members.X))
    y = torch.from_numpy(members.y)
    arch = model_architecture(cfg, schema)
    model = build_model(arch, seed=derive_seed(seed, "teacher", "init"))
    validation = (X[val_rows], y[val_rows]) if len(val_rows) else None
    model, log = fit(
        model, X[train_rows], y[train_rows], loss_fn=teacher_loss(cfg), recipe=Recipe.from_config(cfg),
        seed=derive_seed(seed, "teacher", "batches"), validation=validation, metric=accuracy, on_epoch=on_epoch,
        checkpoint=checkpoint,
    )
    return TeacherFit(Classifier(model, arch, schema, scaler), train_rows, val_rows, log)
