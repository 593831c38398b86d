"""The report's privacy block of a PATE labelling run, and ε re-derived from it."""

from __future__ import annotations

import numpy as np

from distillguard.privacy.pate_data_dependent import data_dependent_rdp
from distillguard.privacy.pate_rdp import pate_epsilon, threshold_rdp
from distillguard.privacy.rdp import DEFAULT_ALPHAS, rdp_to_dp


def pate_privacy_record(votes: np.ndarray, answered: np.ndarray, *, teachers: int, sigma: float,
                        threshold: float | None, sigma_threshold: float | None, delta: float,
                        data_dependent: bool) -> dict:
    """The report's privacy block of one PATE labelling run.

    ``epsilon`` is the data-independent guarantee (:func:`~distillguard.privacy.pate_rdp.pate_epsilon`),
    recomputable from ``answered``, ``queries``, ``sigma``, ``sigma_threshold`` and ``delta`` alone.
    With ``data_dependent`` the record adds the Papernot et al. (2018) analysis of the
    actual votes (plus the data-independent threshold cost), which is **not** a DP
    guarantee by itself (it depends on the private votes) and is labelled so.

    Args:
        votes: (queries, C) vote counts of every query; answered: (queries,) bool.
    """
    votes, answered = np.asarray(votes), np.asarray(answered, dtype=bool)
    bound = pate_epsilon(answered=int(answered.sum()), queries=len(votes), sigma=sigma, sigma1=sigma_threshold,
                         delta=delta)
    record = {"mechanism": "pate", "epsilon": bound["epsilon"], "delta": delta, "analysis": bound["analysis"],
              "best_alpha": bound["best_alpha"], "teachers": int(teachers), "sigma": sigma,
              "threshold": threshold, "sigma_threshold": sigma_threshold, "queries": bound["queries"],
              "answered": bound["answered"], "aggregator": "confident-gnmax" if threshold is not None else "gnmax",
              "accountant": "rdp (data-independent, Mironov 2017 conversion)", "data_dependent": None}
    if data_dependent:
        rdp = data_dependent_rdp(votes[answered], sigma=sigma, alphas=DEFAULT_ALPHAS)
        if sigma_threshold is not None:
            rdp = rdp + len(votes) * threshold_rdp(DEFAULT_ALPHAS, sigma1=sigma_threshold)
        eps, alpha = rdp_to_dp(DEFAULT_ALPHAS, rdp, delta=delta) if len(votes) else (0.0, float("nan"))
        record["data_dependent"] = {
            "epsilon": eps, "best_alpha": alpha, "analysis": "data-dependent (Papernot et al. 2018)",
            "note": "depends on the private votes, so it is not itself differentially private; "
                    "the guarantee is 'epsilon' above"}
    return record


def recompute_pate_epsilon(record: dict) -> float:
    """The data-independent ε of a :func:`pate_privacy_record`, from its counts and noise alone."""
    return pate_epsilon(answered=int(record["answered"]), queries=int(record["queries"]), sigma=float(record["sigma"]),
                        sigma1=record.get("sigma_threshold"), delta=float(record["delta"]))["epsilon"]
