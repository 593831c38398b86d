"""Per-record and per-class risk: which audited records and which classes an attack exposes.

A record's risk under one attack is its score's percentile among the non-members' scores
(100 = above every non-member). A record is *at risk* when that percentile reaches the
threshold (default 99: the attack's score cut at 1 % false positives on this pool). The
per-record table stays in the owner-only audit folder; the report gets counts and the
riskiest classes only (class names are the task's labels, not record values).
"""

from __future__ import annotations

import numpy as np

RISK_PERCENTILE = 99.0
TOP_CLASSES = 5
MIN_CLASS_MEMBERS = 5  # a class with fewer audited members gets no rate (too noisy to rank)


def nonmember_percentile(scores: np.ndarray, is_member: np.ndarray) -> np.ndarray:
    """(n,) percent of the non-members' scores strictly below each record's score, in [0, 100]."""
    scores = np.asarray(scores, dtype=np.float64)
    reference = np.sort(scores[~np.asarray(is_member, dtype=bool)])
    if not len(reference):
        return np.full(len(scores), np.nan)
    return 100.0 * np.searchsorted(reference, scores, side="left") / len(reference)


def record_risk_columns(*, example_ids: list[str], labels: np.ndarray, classes: list, is_member: np.ndarray,
                        scores: dict[tuple[str, str], np.ndarray]) -> dict[str, list]:
    """Columns of ``record_risk.parquet``: one row per audited record, a score and percentile per (target, attack)."""
    columns: dict[str, list] = {"example_id": list(example_ids), "class": [str(classes[int(c)]) for c in labels],
                                "is_member": np.asarray(is_member, dtype=bool).tolist()}
    for (target, attack), values in scores.items():
        columns[f"{target}:{attack}:score"] = np.asarray(values, dtype=np.float64).tolist()
        columns[f"{target}:{attack}:percentile"] = nonmember_percentile(values, is_member).tolist()
    return columns


def risk_summary(*, labels: np.ndarray, classes: list, is_member: np.ndarray, scores: np.ndarray, target: str,
                 attack: str, threshold: float = RISK_PERCENTILE) -> dict:
    """Counts above the risk threshold and the classes whose members are most often above it.

    Args:
        labels: (n,) class indices of the audited records.
        is_member: (n,) bool ground truth.
        scores: (n,) the attack's scores on ``target``, higher = more likely member.
    """
    is_member = np.asarray(is_member, dtype=bool)
    at_risk = nonmember_percentile(scores, is_member) >= threshold
    by_class = []
    for c in np.unique(labels[is_member]):
        in_class = is_member & (labels == c)
        n = int(in_class.sum())
        if n >= MIN_CLASS_MEMBERS:
            by_class.append({"class": str(classes[int(c)]), "members": n, "members_at_risk": int(at_risk[in_class].sum()),
                             "rate": float(at_risk[in_class].mean())})
    by_class.sort(key=lambda row: (-row["rate"], -row["members_at_risk"], row["class"]))
    return {
        "target": target, "attack": attack, "threshold_percentile": threshold,
        "rule": f"a record is at risk when its score is at or above the {threshold:g}th percentile of the "
                "non-members' scores",
        "members_at_risk": int(at_risk[is_member].sum()), "nonmembers_at_risk": int(at_risk[~is_member].sum()),
        "n_members": int(is_member.sum()), "n_nonmembers": int((~is_member).sum()),
        "riskiest_classes": by_class[:TOP_CLASSES],
        "min_class_members": MIN_CLASS_MEMBERS,
    }
