"""Running the attacks: on the audit pool against the real models, and on the canaries
against held-out shadow replicas. Pure functions of signals; no I/O."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distillguard.attack_names import SELECTED_ATTACK
from distillguard.audit.attacks import make_attack
from distillguard.audit.selection import Configuration
from distillguard.audit.signals import ReferenceSignals, TargetSignals
from distillguard.config import AuditConfig


def build_attack(name: str, cfg: AuditConfig, chosen: Configuration | None = None):
    """The attack ``name`` with the spec's settings; ``"strongest"`` is ``chosen`` (audit/selection.py)."""
    if name == SELECTED_ATTACK:
        if chosen is None:
            raise ValueError(f"attack {SELECTED_ATTACK!r} needs its configuration chosen on the shadows first "
                             "(audit/selection.py: select_configuration)")
        return chosen.build()
    if name in ("lira_online", "lira_offline"):
        return make_attack(name, variance=cfg.lira_variance)
    if name == "rmia":
        return make_attack(name, offline=cfg.rmia_offline)
    return make_attack(name)


def score_targets(names: Sequence[str], cfg: AuditConfig, target: TargetSignals,
                  reference: ReferenceSignals | None, chosen: Configuration | None = None) -> dict[str, np.ndarray]:
    """Scores (n,) of every attack against one target model, calibrated on ``reference``."""
    scores = {}
    for name in names:
        attack = build_attack(name, cfg, chosen)
        if attack.requires_reference:
            attack.fit(reference)
        scores[name] = attack.score(target)
    return scores


def score_canaries_leave_one_out(
    names: Sequence[str], cfg: AuditConfig, *, logits: np.ndarray, labels: np.ndarray, included: np.ndarray,
    population_logits: np.ndarray | None, population_labels: np.ndarray | None, chosen: Configuration | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each shadow in turn is the target; the others calibrate the attack (LiRA reference code).

    Args:
        logits: (S, K, C) shadow outputs on the K canaries; included: (S, K) bool.
        population_logits: (S, m, C) shadow outputs on the population records.

    Returns:
        attack -> (scores (S·K,), is_member (S·K,)), target shadow major.
    """
    S = len(logits)
    out: dict[str, tuple[list, list]] = {name: ([], []) for name in names}
    for s in range(S):
        others = np.arange(S) != s
        target = TargetSignals(logits[s], labels, None if population_logits is None else population_logits[s],
                               population_labels)
        reference = ReferenceSignals(logits[others], included[others], labels,
                                     None if population_logits is None else population_logits[others], population_labels)
        for name, scores in score_targets(names, cfg, target, reference, chosen).items():
            out[name][0].append(scores)
            out[name][1].append(included[s])
    return {name: (np.concatenate(sc), np.concatenate(inc)) for name, (sc, inc) in out.items()}
