"""The per-record score table and the attack summary both audit tracks write.

``scores.parquet`` (CONTRACT.md) holds one row per scored record, target and attack, so
every number of ``metrics.json`` can be recomputed from it; :func:`summarize_attack` is
that number for one attack, with a bootstrap seeded by (target, attack, population) so
that adding an attack or a target leaves the others' intervals unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distillguard.audit.metrics import summarize
from distillguard.config import Spec
from distillguard.seeding import derive_seed

FPRS = ("0.01", "0.001", "0")


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



def summarize_attack(scores: np.ndarray, is_member: np.ndarray, *, spec: Spec, target: str, attack: str,
                     population: str) -> dict:
    """One row of ``metrics.json["attacks"]``: AUC, TPR at each of :data:`FPRS`, bootstrap intervals.

    Args:
        scores: (n,) attack scores, higher = more likely member.
        is_member: (n,) bool ground truth.
        spec: the run's spec (``[audit]`` bootstrap and confidence, ``[run]`` seed).
        target, attack, population: what was attacked, by which attack, on which records.
    """
    summary = summarize(scores, is_member, fprs=FPRS, n_bootstrap=spec.audit.bootstrap, confidence=spec.audit.confidence,
                        seed=derive_seed(spec.run.seed, "bootstrap", target, attack, population))
    return {"attack": attack, "target": target, "population": population, **summary.to_dict()}
