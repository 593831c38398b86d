"""What the teacher releases to the student: which transfer records, and what about them.

One pure function serves the label stage and the audit's shadow pipelines, so a shadow
replays the release exactly as the real pipeline performs it: the same transfer
selection rule (applied to *its* teacher's logits and *its* private training set) and
the same soft-label knobs (with its own noise draw).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillguard.config import SoftLabelConfig, TransferConfig
from distillguard.data.transfer_selection import far_from_private, lowest_entropy, random_subset
from distillguard.seeding import derive_seed
from distillguard.train.label_defenses import defend_soft_labels


@dataclass(frozen=True)
class Release:
    """Attributes:
        rows: (m,) sorted indices into the queried transfer records that are released.
        targets: (m, C) float32 released log-probabilities at T=1 (the student's "teacher logits").
    """

    rows: np.ndarray
    targets: np.ndarray


def select_transfer(teacher_logits: np.ndarray, *, transfer_X: np.ndarray, private_X: np.ndarray | None,
                    cfg: TransferConfig, seed: int) -> np.ndarray:
    """Sorted indices of the transfer records to release: a random subset first, then the rule."""
    rows = np.arange(len(teacher_logits))
    if cfg.size is not None:
        rows = random_subset(len(rows), size=cfg.size, rng=np.random.default_rng(derive_seed(seed, "transfer", "subset")))
    if cfg.select == "low_entropy":
        rows = rows[lowest_entropy(teacher_logits[rows], fraction=cfg.keep_fraction)]
    elif cfg.select == "far_from_private":
        if private_X is None:
            raise ValueError("far_from_private selection needs the teacher's private training inputs")
        rows = rows[far_from_private(transfer_X[rows], private_X, drop_fraction=1.0 - cfg.keep_fraction)]
    return rows


def release(teacher_logits: np.ndarray, *, transfer_X: np.ndarray, private_X: np.ndarray | None,
            softlabels: SoftLabelConfig, transfer: TransferConfig, seed: int, noise_seed: int) -> Release:
    """Select transfer records, then apply the soft-label knobs to the teacher's logits on them.

    Args:
        teacher_logits: (n, C) the teacher's T=1 logits on the queried transfer records.
        transfer_X: (n, d) those records' raw features (for distance-based selection).
        private_X: (k, d) the teacher's training inputs, or None when no rule needs them.
        seed: the run seed (random subset; shared by a run and its shadows, as the
            subset does not depend on the teacher).
        noise_seed: seeds the logit noise; a shadow passes its own.
    """
    rows = select_transfer(teacher_logits, transfer_X=transfer_X, private_X=private_X, cfg=transfer, seed=seed)
    chosen = np.asarray(teacher_logits)[rows]
    targets = chosen.astype(np.float32) if softlabels.is_identity() else defend_soft_labels(
        chosen, seed=noise_seed, **softlabels.knobs())
    return Release(rows=rows, targets=targets)
