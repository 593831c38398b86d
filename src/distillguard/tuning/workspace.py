"""The tuner's private copy of the data: every role but the test split.

Candidates are full pipeline runs, and a run's audit uses its ``test`` role as the
attacks' population set and for utility. The tuner must never look at the user's test
split, so it gives each candidate run a stand-in: a held-out slice of the *transfer*
set labelled by the undefended teacher (public inputs; the student never trains on
them). Utility for selection is measured separately, on the nonmembers: records neither
the teacher nor the student ever trained on, whose labels the audit's shadows use
anyway. The copies are sensitive, so the folder is owner-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distillguard.config import Spec
from distillguard.data import load_members, load_role
from distillguard.data.types import Schema, Split
from distillguard.errors import DataError
from distillguard.models.artifact import Classifier, load_classifier
from distillguard.runs import atomic_write_bytes
from distillguard.seeding import derive_seed
from distillguard.train.teacher import train_teacher

HOLDOUT_FRACTION = 0.1
MIN_HOLDOUT = 50


@dataclass(frozen=True)
class Workspace:
    """Attributes:
        data: {"format": "npz", role: path} for the candidate specs' ``[data]``.
        schema: the members' schema; nonmembers: for the utility estimate.
        teacher_accuracy: the undefended teacher's accuracy on the nonmembers.
        n_transfer: transfer records the candidates distill on.
    """

    data: dict
    schema: Schema
    nonmembers: Split
    teacher_accuracy: float
    n_transfer: int


def prepare_workspace(spec: Spec, folder: Path) -> Workspace:
    """Write members, nonmembers, transfer (minus a hold-out) and the hold-out as NPZ files."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    seed = spec.run.seed
    schema, members = load_members(spec.data, seed=seed)
    nonmembers = load_role(spec.data, "nonmembers", schema=schema, seed=seed)
    transfer = load_role(spec.data, "transfer", schema=schema, seed=seed)
    n_hold = max(MIN_HOLDOUT, int(round(HOLDOUT_FRACTION * len(transfer))))
    if len(transfer) < 2 * n_hold:
        raise DataError(f"tune: the transfer set has {len(transfer)} records; it needs at least {2 * n_hold} "
                        f"to hold {n_hold} out as the audit's population")
    order = np.random.default_rng(derive_seed(seed, "tune", "holdout")).permutation(len(transfer))
    hold, keep = np.sort(order[:n_hold]), np.sort(order[n_hold:])
    teacher = _undefended_teacher(spec, schema, members)
    classes = np.asarray(schema.classes)
    holdout_labels = teacher.logits(transfer.X[hold]).argmax(axis=1)
    splits = {
        "members": (members.X, classes[members.y]),
        "nonmembers": (nonmembers.X, classes[nonmembers.y]),
        "transfer": (transfer.X[keep], None),
        "test": (transfer.X[hold], classes[holdout_labels]),
    }
    data: dict = {"format": "npz", "leak_policy": spec.data.leak_policy, "leak_threshold": spec.data.leak_threshold}
    for role, (X, y) in splits.items():
        data[role] = str(_write_npz(folder / f"{role}.npz", X, y))
    if len(schema.input_shape) > 1:
        data["input_shape"] = list(schema.input_shape)
    accuracy = float((teacher.logits(nonmembers.X).argmax(axis=1) == nonmembers.y).mean())
    return Workspace(data, schema, nonmembers, accuracy, len(keep))


def _undefended_teacher(spec: Spec, schema: Schema, members: Split) -> Classifier:
    """The reference teacher: the spec's own (loaded), or its recipe trained without defenses."""
    if spec.teacher.path is not None:
        return load_classifier(Path(spec.teacher.path))[0]
    plain = spec.teacher.model_copy(update={"label_smoothing": 0.0})
    return train_teacher(members, schema=schema, cfg=plain, seed=spec.run.seed).classifier


def _write_npz(path: Path, X: np.ndarray, y: np.ndarray | None) -> Path:
    import io

    buffer = io.BytesIO()
    arrays = {"X": np.asarray(X, dtype=np.float32)}
    if y is not None:
        arrays["y"] = np.asarray(y)
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return path
