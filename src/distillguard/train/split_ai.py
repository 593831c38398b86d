"""Training a Split-AI teacher (SELENA, Tang et al. 2022): K sub-teachers on overlapping subsets.

Every member is left out of exactly L sub-teachers (:func:`distillguard.models.split_ai.assign_exclusions`);
sub-teacher t trains on the members not left out of it, with the teacher's recipe and
loss, last epoch kept (no checkpoint selection on private data, as the partition
ensembles). The sub-teachers share one scaler, fitted on public data where there is
some, so one record cannot move all of them through the standardization.
"""

from __future__ import annotations

import numpy as np
import torch

from distillguard.checkpoints import Checkpoint
from distillguard.config import TeacherConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard.errors import ConfigError
from distillguard.models.artifact import Classifier
from distillguard.models.classifiers import build_model
from distillguard.models.split_ai import assign_exclusions, row_keys, split_ai_architecture, training_rows
from distillguard.seeding import derive_seed
from distillguard.train.loop import Recipe
from distillguard.train.pate import fit_partitions
from distillguard.train.teacher import model_architecture, teacher_loss


def split_ai_plan(X_scaled: np.ndarray, *, k: int, l: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(table_keys, excluded, rows): the exclusion table of the scaled float32 rows and each sub-teacher's rows."""
    keys = row_keys(X_scaled)
    table_keys, excluded = assign_exclusions(keys, k=k, l=l, seed=derive_seed(seed, "split-ai", "exclusions"))
    return table_keys, excluded, training_rows(keys, table_keys, excluded, k=k)


def sub_teacher_seeds(seed: int, k: int) -> list[int]:
    return [derive_seed(seed, "split-ai", t) for t in range(k)]


def routing_salt(seed: int) -> int:
    """The key of the hash that routes non-member inputs (secret with the teacher folder)."""
    return derive_seed(seed, "split-ai", "route")


def train_split_ai(members: Split, *, schema: Schema, cfg: TeacherConfig, seed: int, scaler: Standardizer,
                   batched: bool | None = None, on_epoch=None, checkpoint: Checkpoint | None = None) -> Classifier:
    """The Split-AI teacher of ``cfg.split_ai`` on the members, as one :class:`~distillguard.models.split_ai.SplitAI`.

    Returns:
        A classifier whose logits are the log of the mean probability of the L answering
        sub-teachers: a member's L never saw it.
    """
    split = cfg.split_ai
    if split is None:
        raise ConfigError("train_split_ai needs [teacher.split_ai]")
    if members.y is None:
        raise ConfigError("a Split-AI teacher needs labeled members (members.y is None)")
    X = scaler.transform(np.asarray(members.X, dtype=np.float32))  # (n, d), exactly as Classifier.logits scales
    table_keys, excluded, parts = split_ai_plan(X, k=split.k, l=split.l, seed=seed)
    if any(len(p) == 0 for p in parts):
        raise ConfigError(f"[teacher.split_ai]: with {len(table_keys)} distinct members, k = {split.k} and "
                          f"l = {split.l} leave a sub-teacher with nothing to train on; lower l")
    base = model_architecture(cfg, schema)
    states = fit_partitions(base, torch.from_numpy(X), torch.from_numpy(members.y).long(), parts,
                            recipe=Recipe.from_config(cfg), seeds=sub_teacher_seeds(seed, split.k), batched=batched,
                            on_epoch=on_epoch, checkpoint=checkpoint, split_ranks=True, loss_fn=teacher_loss(cfg))
    arch = split_ai_architecture(base, k=split.k, l=split.l, n_keys=len(table_keys))
    model = build_model(arch, seed=0)
    for member, state in zip(model.members, states):
        member.load_state_dict(state)
    model.set_table(table_keys, excluded, routing_salt(seed))
    model.eval()
    return Classifier(model, arch, schema, scaler)
