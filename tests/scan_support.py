"""Helpers of the scan tests: an overfit sklearn model on the CSV splits, exported to ONNX, and its predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from conftest import csv_spec_text


def features(path: Path) -> np.ndarray:
    return pd.read_csv(path).drop(columns="y").to_numpy(np.float32)


def fit_forest(paths: dict[str, Path], *, drop_feature: bool = False) -> RandomForestClassifier:
    """A random forest on the members: it memorizes them (every member is a leaf of most trees)."""
    X = features(paths["members"])
    if drop_feature:
        X = X[:, 1:]
    return RandomForestClassifier(n_estimators=30, random_state=0).fit(X, pd.read_csv(paths["members"])["y"])


def export_onnx(clf: RandomForestClassifier, path: Path, n_features: int, *, zipmap: bool = False) -> Path:
    from skl2onnx import to_onnx

    onx = to_onnx(clf, np.zeros((1, n_features), np.float32), options={id(clf): {"zipmap": zipmap}})
    path.write_bytes(onx.SerializeToString())
    return path


def write_predictions(clf: RandomForestClassifier, paths: dict[str, Path], out: Path) -> Path:
    """The forest's probabilities on every member and nonmember, as a predictions file."""
    rows = []
    for role in ("members", "nonmembers"):
        probs = clf.predict_proba(features(paths[role]))
        rows += [{"example_id": f"{role}:{i}", "is_member": role == "members", **dict(zip(clf.classes_, p))}
                 for i, p in enumerate(probs)]
    frame = pd.DataFrame(rows)
    frame.to_parquet(out) if out.suffix == ".parquet" else frame.to_csv(out, index=False)
    return out


def scan_spec(folder: Path, scan: str, *, extra: str = "", name: str = "scan") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(csv_spec_text(name=name, extra="[audit]\nbootstrap = 20\n" + extra) + "[scan]\n" + scan)
    return path


def recompute(scores: pd.DataFrame, attack: dict) -> tuple[float, float | None]:
    """AUC and TPR at FPR ≤ 1% of one report row, from scores.parquet, with scikit-learn."""
    from sklearn.metrics import roc_auc_score, roc_curve

    rows = scores[(scores.attack == attack["attack"]) & (scores.target == attack["target"])
                  & (scores.is_canary == (attack["population"] == "canaries"))]
    auc = roc_auc_score(rows.is_member, rows.score)
    fpr, tpr, _ = roc_curve(rows.is_member, rows.score)
    return auc, float(tpr[fpr <= 0.01].max())
