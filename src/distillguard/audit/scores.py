"""The per-record score table and the attack summary both audit tracks write.

``scores.parquet`` (CONTRACT.md) holds one row per scored record, target and attack, so
every number of ``metrics.json`` can be recomputed from it; :func:`summarize_attack` is
that number for one attack, with a bootstrap seeded by (target, attack, population) so
that adding an attack or a target leaves the others' intervals unchanged.
"""

from __future__ import annotations

import math
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
                     population: str, seed_target: str | None = None) -> dict:
    """One row of ``metrics.json["attacks"]``: AUC, TPR at each of :data:`FPRS`, bootstrap intervals.

    A level that the non-members cannot resolve (FPR ≤ x needs ``1/x`` of them) is null,
    with the reason under ``"unresolved"``; ``"lowest_fpr"`` is the TPR at the lowest FPR
    they do resolve, one false positive (``1/n_nonmembers``). The TPR at zero false
    positives is the ``"0"`` level. Intervals are stratified percentile bootstraps.

    Args:
        scores: (n,) attack scores, higher = more likely member.
        is_member: (n,) bool ground truth.
        spec: the run's spec (``[audit]`` bootstrap and confidence, ``[run]`` seed).
        target, attack, population: what was attacked, by which attack, on which records.
        seed_target: the target name the bootstrap is seeded by (default ``target``): a scanned
            model draws the resamples the pipeline's teacher would, so equal scores give equal intervals.
    """
    n_out = int(np.sum(~np.asarray(is_member, dtype=bool)))
    lowest = repr(1.0 / n_out) if n_out else None
    levels = FPRS + ((lowest,) if lowest is not None and lowest not in FPRS else ())
    summary = summarize(scores, is_member, fprs=levels, n_bootstrap=spec.audit.bootstrap,
                        confidence=spec.audit.confidence,
                        seed=derive_seed(spec.run.seed, "bootstrap", seed_target or target, attack,
                                         population)).to_dict()
    row = {"attack": attack, "target": target, "population": population, **summary}
    if lowest is not None:
        tpr, ci = summary["tpr_at_fpr"].get(lowest), summary["tpr_at_fpr_ci"].get(lowest)
        if lowest not in FPRS:
            del row["tpr_at_fpr"][lowest], row["tpr_at_fpr_ci"][lowest]
        row["lowest_fpr"] = {"fpr": round(1.0 / n_out, 6), "tpr": tpr, "tpr_ci": ci,
                             "note": f"one false positive among {n_out} non-members"}
    row["unresolved"] = {key: f"FPR <= {key} needs at least {math.ceil(1 / float(key) - 1e-9)} non-members; "
                              f"{n_out} were scored" for key in FPRS if row["tpr_at_fpr"].get(key) is None}
    return row
