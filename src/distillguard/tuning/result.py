"""What a search produces: one audited candidate (:class:`Evaluation`) and the whole search
(:class:`TuneResult`), shared by the search and its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from distillguard.tuning.pareto import Point


@dataclass
class Evaluation:
    """One candidate audited at one rung (number of shadows)."""

    name: str
    overrides: dict
    shadows: int
    seconds: float
    accuracy: float  # student on the nonmembers: an unbiased estimate of test accuracy
    accuracy_ci: list[float]
    fidelity: float  # agreement with the undefended teacher on held-out public records
    attack: str
    auc: float
    auc_ci: list[float]
    tpr: float | None
    canary_auc: float | None = None
    canary_tpr: float | None = None
    teacher_auc: float | None = None

    def point(self) -> Point:
        """Selection coordinates: leakage as the upper end of the AUC interval (as the gate reads it)."""
        return Point(self.accuracy, 1.0 if self.tpr is None else self.tpr, self.auc_ci[1])


@dataclass
class TuneResult:
    folder: Path
    evaluations: list[Evaluation]
    chosen: Evaluation
    met_target: bool
    front: list[int]
    teacher_accuracy: float
    min_accuracy: float
    best_spec: Path
    budget_seconds: float
    elapsed_seconds: float
    skipped: list[str] = field(default_factory=list)
