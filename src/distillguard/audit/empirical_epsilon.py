"""The one-run ε audit on the canaries of the audit replicas (Steinke, Nasr & Jagielski 2023).

Replica 0 is the audited training run. Its guess counts (k_pos, k_neg) are chosen on
the other replicas, whose scores are calibrated without replica 0, so nothing about
replica 0's inclusion bits enters the choice.
"""

from __future__ import annotations

import numpy as np

from distillguard.audit.epsilon import choose_guess_counts, eps_lower_bound_one_run, one_run_guesses
from distillguard.audit.membership import score_canaries_leave_one_out
from distillguard.audit.selection import Configuration
from distillguard.config import AuditConfig

METHOD = "one-run audit (Steinke et al. 2023)"


def guess_candidates(n_canaries: int) -> list[tuple[int, int]]:
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= n_canaries // 2]
    return [(k, 0) for k in ks] + [(k, k) for k in ks]


def one_run_epsilon(
    attack: str, cfg: AuditConfig, *, logits: np.ndarray, labels: np.ndarray, included: np.ndarray,
    audited_scores: np.ndarray, population_logits: np.ndarray | None, population_labels: np.ndarray | None,
    delta: float, confidence: float = 0.95, chosen: Configuration | None = None,
) -> dict:
    """ε lower bound for replica 0 of one target kind.

    Args:
        logits: (S, K, C) replica outputs on the canaries; included: (S, K) inclusion bits.
        audited_scores: (K,) replica 0's canary scores, calibrated on replicas 1..S-1.
    """
    rest = np.arange(1, len(logits))
    calibration = score_canaries_leave_one_out(
        [attack], cfg, logits=logits[rest], labels=labels, included=included[rest],
        population_logits=None if population_logits is None else population_logits[rest],
        population_labels=population_labels, chosen=chosen,
    )[attack][0].reshape(len(rest), -1)
    k_pos, k_neg = choose_guess_counts(calibration, included[rest], candidates=guess_candidates(labels.shape[0]),
                                       delta=delta, confidence=confidence)
    correct, made = one_run_guesses(audited_scores, included[0], k_pos=k_pos, k_neg=k_neg)
    bound = eps_lower_bound_one_run(guesses_correct=correct, guesses_made=made, n_canaries=len(audited_scores),
                                    delta=delta, confidence=confidence)
    return {"method": METHOD, "epsilon_lower": round(bound, 6), "delta": delta, "confidence": confidence,
            "attack": attack, **({"configuration": chosen.to_dict()} if chosen is not None and attack == "strongest" else {}),
            "n_canaries": int(len(audited_scores)), "k_pos": k_pos, "k_neg": k_neg,
            "correct": correct, "guesses": made}
