"""Stage 4: utility and membership inference, teacher vs student, into audit/.

Writes ``metrics.json`` (every number the report shows), ``scores.parquet`` (one row per
record, target and attack, so each number can be recomputed), ``record_risk.parquet``
(one row per audited record: class, each attack's score and percentile among the
non-members) and ROC plots. What is
measured, and how, lives in the audit library (audit/classifier_audit.py; where the
shadows run: audit/placement.py); this stage fingerprints its inputs and writes files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.audit.classifier_audit import audit_models
from distillguard.audit.shadow_cache import run_cache
from distillguard.audit.shadow_outputs import SHADOW_OUTPUTS, write_shadow_outputs
from distillguard.config import Spec
from distillguard.data import data_fingerprint, shard_numbers
from distillguard.data.softlabel_shards import read_query_ids
from distillguard.report.plots import save_roc_plot
from distillguard.runs import RunDir, atomic_write_json
from distillguard.stages.common import checkpoint_store, execute_stage

OUTPUT = "audit"


def run_audit_stage(spec: Spec, run: RunDir) -> bool:
    inputs = {
        rel: run.output_hash(stage, rel)
        for stage, rel in [("teacher", "teacher/model.safetensors"), ("teacher", "teacher/config.json"),
                           ("teacher", "teacher/split.json"), ("distill", "student/model.safetensors"),
                           ("distill", "student/config.json")]
    }
    inputs.update({f"data.{role}": data_fingerprint(spec.data, role) for role in ("members", "nonmembers", "transfer", "test")})
    params = {"audit": spec.audit.fingerprint_params(), "data": spec.data.fingerprint_params(), "seed": spec.run.seed,
              "teacher": spec.section_dict("teacher"), "student": spec.section_dict("student"),
              "distill": spec.section_dict("distill"), "softlabels": spec.section_dict("softlabels"),
              "transfer": spec.section_dict("transfer")}
    if spec.privacy.mechanism == "pate":  # the shadows replay the votes' noise and threshold
        params["privacy"] = spec.section_dict("privacy")
    if spec.audit.shadows:  # the shadows replay the release from the recorded queries
        inputs.update({rel: run.output_hash("label", rel) for rel in ("softlabels/meta.json", "softlabels/queries.parquet")})
        if shard_numbers(read_query_ids(run / "softlabels"), spec.run.shard_rows) is not None:
            params["shard_rows"] = spec.run.shard_rows  # the shadow students replay the student's blocks

    checkpoints = checkpoint_store(spec, run, "audit")

    def build(folder: Path) -> dict:
        with run_cache(run / "teacher"):  # a re-audit of this teacher reuses its shadow teachers
            audited = audit_models(spec, run, checkpoints=checkpoints)
        metrics = write_audit(folder, audited, title="teacher vs student")
        return {"n_pool": metrics["populations"]["all"]["n_members"] * 2, "shadows": spec.audit.shadows}

    return execute_stage(run, "audit", params=params, inputs=inputs, output=OUTPUT, build=build,
                         checkpoints=checkpoints)


def write_audit(folder: Path, results: tuple, *, title: str) -> dict:
    """The files of audit/ from what the audit library returns; returns metrics.json's content."""
    os.chmod(folder, 0o700)  # per-record scores reveal who was a member
    metrics, rows, curves, shadow_outputs, risk = results
    pq.write_table(pa.table(rows.columns), folder / "scores.parquet")
    pq.write_table(pa.table(risk), folder / "record_risk.parquet")
    if shadow_outputs is not None:  # as sensitive as scores.parquet: removed by --destroy-teacher
        write_shadow_outputs(folder / SHADOW_OUTPUTS, shadow_outputs)
    for attack, by_target in curves.items():
        save_roc_plot(by_target, folder / f"roc_{attack}.png", title=f"{attack}: {title}")
    atomic_write_json(folder / "metrics.json", metrics)
    return metrics
