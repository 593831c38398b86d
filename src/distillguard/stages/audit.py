"""Stage 4: utility and membership inference, teacher vs student, into audit/.

Writes ``metrics.json`` (every number the report shows), ``scores.parquet`` (one row per
record, target and attack, so each number can be recomputed) and ROC plots. The member
population is the teacher's *trained* members: the validation slice held out for
checkpoint selection was never trained on and is left out.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard import progress
from distillguard.audit.attacks import make_attack
from distillguard.audit.metrics import roc, summarize
from distillguard.audit.signals import TargetSignals
from distillguard.audit.utility import accuracy, agreement, mean_cross_entropy
from distillguard.config import Spec
from distillguard.data import data_fingerprint, load_members, load_role
from distillguard.models.artifact import Classifier, load_classifier
from distillguard.report.plots import save_roc_plot
from distillguard.runs import RunDir, atomic_write_json, read_json
from distillguard.seeding import derive_seed
from distillguard.stages.common import execute_stage

OUTPUT = "audit"
TARGETS = ("teacher", "student")
FPRS = ("0.01", "0.001", "0")


def run_audit_stage(spec: Spec, run: RunDir) -> bool:
    inputs = {
        rel: run.output_hash(stage, rel)
        for stage, rel in [("teacher", "teacher/model.safetensors"), ("teacher", "teacher/config.json"),
                           ("teacher", "teacher/split.json"), ("distill", "student/model.safetensors"),
                           ("distill", "student/config.json")]
    }
    inputs.update({f"data.{role}": data_fingerprint(spec.data, role) for role in ("members", "nonmembers", "test")})
    params = {"audit": spec.section_dict("audit"), "data": spec.data.fingerprint_params(), "seed": spec.run.seed}

    def build(folder: Path) -> dict:
        os.chmod(folder, 0o700)  # per-record scores reveal who was a member
        models = {name: load_classifier(run / name)[0] for name in TARGETS}
        schema, members = load_members(spec.data, seed=spec.run.seed)
        nonmembers = load_role(spec.data, "nonmembers", schema=schema, seed=spec.run.seed)
        test = load_role(spec.data, "test", schema=schema, seed=spec.run.seed)
        trained = np.asarray(read_json(run / "teacher" / "split.json")["train_ids"], dtype=np.int64)
        members = members.subset(np.flatnonzero(np.isin(members.ids, trained)))

        metrics = {"utility": utility(models, test.X, test.y)}
        rows, results, curves = _attack_all(spec, models, members, nonmembers)
        metrics["attacks"] = results
        metrics["populations"] = {"all": {"n_members": len(members), "n_nonmembers": len(nonmembers)}}
        pq.write_table(pa.table(rows), folder / "scores.parquet")
        for attack, by_target in curves.items():
            save_roc_plot(by_target, folder / f"roc_{attack}.png", title=f"{attack}: teacher vs student (log-log)")
        atomic_write_json(folder / "metrics.json", metrics)
        return {"n_members": len(members), "n_nonmembers": len(nonmembers)}

    return execute_stage(run, "audit", params=params, inputs=inputs, output=OUTPUT, build=build)


def utility(models: dict[str, Classifier], X: np.ndarray, y: np.ndarray) -> dict:
    logits = {name: clf.logits(X) for name, clf in models.items()}
    out = {name: {"test_accuracy": accuracy(z, y), "test_loss": mean_cross_entropy(z, y)} for name, z in logits.items()}
    out["accuracy_gap"] = out["teacher"]["test_accuracy"] - out["student"]["test_accuracy"]
    out["agreement"] = agreement(logits["teacher"], logits["student"])
    out["n_test"] = int(len(y))
    return out


def _attack_all(spec: Spec, models: dict[str, Classifier], members, nonmembers):
    labels = np.concatenate([members.y, nonmembers.y])
    is_member = np.concatenate([np.ones(len(members), bool), np.zeros(len(nonmembers), bool)])
    example_ids = [f"members:{i}" for i in members.ids] + [f"nonmembers:{i}" for i in nonmembers.ids]
    X = np.concatenate([members.X, nonmembers.X])
    rows: dict[str, list] = {k: [] for k in ("example_id", "target", "attack", "score", "is_member", "is_canary")}
    results, curves = [], {}
    with progress.task("audit: membership inference", len(models) * len(spec.audit.attacks)) as advance:
        for target, clf in models.items():
            signals = TargetSignals(logits=clf.logits(X), labels=labels, population_logits=None, population_labels=None)
            for name in spec.audit.attacks:
                scores = make_attack(name).score(signals)
                summary = summarize(scores, is_member, fprs=FPRS, n_bootstrap=spec.audit.bootstrap,
                                    confidence=spec.audit.confidence, seed=derive_seed(spec.run.seed, "bootstrap", target, name))
                results.append({"attack": name, "target": target, "population": "all", **summary.to_dict()})
                curves.setdefault(name, {})[target] = roc(scores, is_member)
                rows["example_id"] += example_ids
                rows["target"] += [target] * len(scores)
                rows["attack"] += [name] * len(scores)
                rows["score"] += scores.astype(float).tolist()
                rows["is_member"] += is_member.tolist()
                rows["is_canary"] += [False] * len(scores)
                advance(1)
    return rows, results, curves
