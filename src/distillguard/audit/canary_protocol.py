"""The field's canary metric: TPR at 0.1 % FPR over one kind of canary, pooled across replicas.

Aerni, Zhang & Tramèr (CCS 2024) judge a defense on its most vulnerable records: canaries
(mislabeled real records) planted in independently trained replicas, each replica in turn
the target, the canary scores pooled over replicas, then the TPR at a low FPR. Averages
over a population hide exactly those records. The audit's canaries come in kinds
(``ood_mislabeled``, ``mislabeled``, with ``_x{r}`` for duplicated ones); a kind's row
pools its single and duplicated canaries, as the paper pools its canaries.

At 0.1 % FPR the pooled non-member draws must number at least 1,000; with fewer, the level
is null and the row says why and gives the TPR at the lowest FPR it does resolve (one
false positive). Numbers only: no record value reaches the report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["canary_family", "vulnerable_record_rows"]


def canary_family(kind: str) -> str:
    """``"mislabeled_x4"`` → ``"mislabeled"``: a kind without its duplication suffix."""
    head, _, tail = kind.rpartition("_x")
    return head if head and tail.isdigit() else kind


def vulnerable_record_rows(scored: tuple[np.ndarray, np.ndarray], kinds: Sequence[str], *, target: str, attack: str,
                           summarize: Callable[[np.ndarray, np.ndarray, str], dict]) -> list[dict]:
    """One summary row per canary family, over the replicas' held-out canary scores.

    Args:
        scored: (scores, is_member), each (S·K,), target replica major (canary k of replica
            s at s·K + k), as :func:`~distillguard.audit.membership.score_canaries_leave_one_out`
            returns them.
        kinds: (K,) the kind of each canary slot.
        summarize: (scores, is_member, family) → the attack-summary row (AUC, TPR at FPR
            levels with the unresolved ones explained, lowest resolvable FPR).

    Returns:
        Rows with ``family``, ``canary_ids`` (the slots k of that family, so the numbers
        recompute from ``scores.parquet``'s ``canary:{k}@replica{s}`` rows) and the summary.
    """
    scores, is_member = (np.asarray(a) for a in scored)
    K = len(kinds)
    if K == 0 or scores.size % K:
        raise ValueError(f"{scores.size} canary scores do not split into replicas of {K} canaries")
    family = np.array([canary_family(k) for k in kinds])
    slot = np.tile(np.arange(K), scores.size // K)
    rows = []
    for name in dict.fromkeys(family):  # first-seen order
        keep = family[slot] == name
        row = summarize(scores[keep], is_member[keep], name)
        rows.append({"family": name, "target": target, "attack": attack,
                     "canary_ids": [int(k) for k in np.flatnonzero(family == name)], **row})
    return rows
