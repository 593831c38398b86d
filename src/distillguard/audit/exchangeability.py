"""Are members and nonmembers exchangeable? If a classifier on the features alone can
tell them apart, attack AUCs measure distribution shift, not leakage."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

WARN_AUC = 0.6


def distinguishability_auc(X: np.ndarray, is_member: np.ndarray, *, seed: int, folds: int = 5) -> float:
    """Cross-validated AUC of a logistic regression predicting membership from features (n, d)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        proba = cross_val_predict(model, X, is_member, cv=splitter, method="predict_proba")[:, 1]
    return float(roc_auc_score(is_member, proba))


def exchangeability_check(X: np.ndarray, is_member: np.ndarray, *, seed: int) -> tuple[dict, str | None]:
    """The check's record for the report, and a warning when the split looks non-random."""
    value = distinguishability_auc(X, is_member, seed=seed)
    record = {"method": "5-fold logistic regression on features", "auc": round(value, 6), "warn_above": WARN_AUC}
    warning = None
    if value > WARN_AUC:
        warning = (f"members and nonmembers are distinguishable from their features alone (AUC {value:.3f} > {WARN_AUC}): "
                   "the split is not random, so attack AUCs measure distribution shift as well as leakage")
    return record, warning
