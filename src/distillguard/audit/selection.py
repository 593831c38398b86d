"""The "strongest" attack: one shadow-attack configuration chosen on the shadows, never on the target.

Candidates are the LiRA family (online and offline, each with the pooled ``"global"``,
``"per_example"`` and the reference code's ``"fixed"`` variance; online also
``"fixed_out"``) and RMIA (online, and offline with several corrections ``a``). Each
candidate is scored leave-one-out: every shadow pipeline in turn is the target and the
other S − 1 calibrate the attack, as the LiRA reference code evaluates itself and as the
canaries are scored (:func:`distillguard.audit.membership.score_canaries_leave_one_out`).
The held-out shadows' scores are pooled (S · n records, S · n/2 of them non-members) and
the candidate with the highest **low-FPR power** wins:

    power = mean of TPR at FPR ≤ 1 % and TPR at FPR ≤ 0.1 % on the pooled held-out scores

(levels the pool cannot resolve are left out). Low FPR because that is where an attack
that confidently identifies some members differs from one that is merely better on
average (Carlini et al. 2022), and where the gate reads; two levels, because one level
alone is decided by a handful of records. Ties go to the higher AUC, then to the earlier
candidate. The function reads only shadow outputs and shadow membership: the real target's
membership labels are not among its arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distillguard.audit.attacks import make_attack
from distillguard.audit.metrics import auc, tpr_at_fpr
from distillguard.audit.signals import ReferenceSignals, TargetSignals

#: FPR levels of the selection criterion (each used when the pooled held-out shadows resolve it).
SELECTION_FPRS = (0.01, 0.001)
CRITERION = "mean TPR at FPR <= 1% and <= 0.1% (levels the pool resolves), leave-one-out over the shadow pipelines"


@dataclass(frozen=True)
class Configuration:
    """One candidate: a registered shadow attack and its hyper-parameters."""

    attack: str
    params: dict[str, Any] = field(default_factory=dict)

    def build(self):
        return make_attack(self.attack, **self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"attack": self.attack, "params": dict(self.params)}


def candidates(*, with_population: bool = True) -> list[Configuration]:
    """The configurations searched, LiRA first (RMIA only when population records exist)."""
    out = [Configuration("lira_online", {"variance": v}) for v in ("global", "per_example", "fixed", "fixed_out")]
    out += [Configuration("lira_offline", {"variance": v}) for v in ("global", "per_example", "fixed")]
    if with_population:
        out += [Configuration("rmia", {"offline": False})]
        out += [Configuration("rmia", {"offline": True, "a": a}) for a in (0.1, 0.3, 0.5, 0.7, 1.0)]
    return out


def leave_one_out_scores(config: Configuration, *, logits: np.ndarray, membership: np.ndarray, labels: np.ndarray,
                         population_logits: np.ndarray | None = None, population_labels: np.ndarray | None = None,
                         target_logits: np.ndarray | None = None, target_population_logits: np.ndarray | None = None,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``config`` on each shadow in turn, calibrated on the others.

    Args:
        logits: (S, n, C) shadow outputs on the audited records; membership: (S, n) bool.
        population_logits: (S, m, C) shadow outputs on population records (RMIA).
        target_logits, target_population_logits: the held-out targets' outputs when they are
            other models than the calibrating shadows (same membership): shadow s trained
            with another recipe (audit/shadow_recipes.py). Default: ``logits``.

    Returns:
        (scores (S·n,), is_member (S·n,)), target shadow major.
    """
    S = len(logits)
    held_out = logits if target_logits is None else target_logits
    held_out_pop = population_logits if target_population_logits is None else target_population_logits
    scores, members = [], []
    for s in range(S):
        others = np.arange(S) != s
        pop_s = None if held_out_pop is None else held_out_pop[s]
        pop_o = None if population_logits is None else population_logits[others]
        reference = ReferenceSignals(logits[others], membership[others], labels, pop_o, population_labels)
        target = TargetSignals(held_out[s], labels, pop_s, population_labels)
        scores.append(config.build().fit(reference).score(target))
        members.append(membership[s])
    return np.concatenate(scores), np.concatenate(members)


def low_fpr_power(scores: np.ndarray, is_member: np.ndarray) -> tuple[float, dict[str, float]]:
    """The selection criterion and the TPRs it averages, keyed by FPR level."""
    n_out = int((~is_member).sum())
    tprs = {str(x): tpr_at_fpr(scores, is_member, x) for x in SELECTION_FPRS if x * n_out >= 1 - 1e-9}
    if not tprs:  # too few held-out non-members for 1 %: the TPR at zero false positives decides
        tprs = {"0": tpr_at_fpr(scores, is_member, 0.0)}
    return float(np.mean(list(tprs.values()))), tprs


def select_configuration(*, logits: np.ndarray, membership: np.ndarray, labels: np.ndarray,
                         population_logits: np.ndarray | None = None, population_labels: np.ndarray | None = None,
                         configurations: Sequence[Configuration] | None = None, target_logits: np.ndarray | None = None,
                         target_population_logits: np.ndarray | None = None) -> tuple[Configuration, list[dict]]:
    """The configuration with the highest low-FPR power over held-out shadows, and every candidate's numbers.

    Args:
        logits: (S, n, C) shadow outputs on the audited records; membership: (S, n) bool.
        labels: (n,) the records' classes.
        population_logits, population_labels: the shadows' outputs on population records (RMIA).
        configurations: the candidates (default :func:`candidates`).
        target_logits, target_population_logits: the held-out shadows' outputs when they are
            not ``logits`` (see :func:`leave_one_out_scores`).

    Returns:
        (the chosen configuration, one dict per candidate: attack, params, power, tpr, auc).
    """
    if len(logits) < 3:
        raise ValueError(f"choosing an attack configuration needs at least 3 shadow pipelines (one held out, "
                         f"two to calibrate); got {len(logits)}")
    configurations = list(configurations) if configurations is not None else candidates(
        with_population=population_logits is not None)
    table, best, best_key = [], None, None
    for i, config in enumerate(configurations):
        scores, is_member = leave_one_out_scores(config, logits=logits, membership=membership, labels=labels,
                                                 population_logits=population_logits,
                                                 population_labels=population_labels, target_logits=target_logits,
                                                 target_population_logits=target_population_logits)
        power, tprs = low_fpr_power(scores, is_member)
        area = auc(scores, is_member)
        table.append({**config.to_dict(), "power": round(power, 6), "tpr_at_fpr": {k: round(v, 6) for k, v in tprs.items()},
                      "auc": round(area, 6)})
        key = (power, area, -i)
        if best_key is None or key > best_key:
            best, best_key = config, key
    return best, table


RECIPE_CRITERION = ("the chosen configuration's criterion with each recipe's shadows calibrating and the replayed "
                    "shadows held out (trained as the real models are); ties go to replay")


def select_recipe(variants: dict[str, tuple[np.ndarray, np.ndarray | None]], *, membership: np.ndarray,
                  labels: np.ndarray, population_labels: np.ndarray | None = None
                  ) -> tuple[str, Configuration, list[dict], dict[str, dict]]:
    """The shadow recipe (audit/shadow_recipes.py) and configuration with the highest low-FPR power.

    Each recipe's shadows calibrate every candidate, leave-one-out, against held-out
    shadows of the **first** recipe of ``variants`` (the replay, trained as the real
    teacher and student are): the question is which shadows attack *such* a model best,
    not which models are easiest to attack. Reads no target's membership.

    Args:
        variants: recipe -> ((S, n, C) pool logits, (S, m, C) population logits or None),
            the replay first; the same S shadows (same membership) in each.

    Returns:
        (recipe, its configuration, its candidates' table, recipe -> the chosen
        configuration, power, TPRs and AUC with that recipe).
    """
    base_pool, base_population = next(iter(variants.values()))
    best, best_key, summary = None, None, {}
    for recipe, (pool, population) in variants.items():
        chosen, table = select_configuration(logits=pool, membership=membership, labels=labels,
                                             population_logits=population, population_labels=population_labels,
                                             target_logits=base_pool, target_population_logits=base_population)
        row = next(r for r in table if r["attack"] == chosen.attack and r["params"] == chosen.params)
        summary[recipe] = {"configuration": chosen.to_dict(), "power": row["power"], "tpr_at_fpr": row["tpr_at_fpr"],
                           "auc": row["auc"]}
        key = (row["power"], row["auc"])
        if best_key is None or key > best_key:
            best, best_key = (recipe, chosen, table), key
    return (*best, summary)
