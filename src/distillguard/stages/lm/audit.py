"""LM stage 4: test perplexity, memorization probes and LM membership attacks, into audit/.

What is measured, and how, is the LM audit library's (lm/probes/audit.py, with the
memorization probes in lm/probes/memorization.py); this stage fingerprints what it reads
and writes ``metrics.json`` (every number: ``utility``, ``probes``, ``attacks``,
``exchangeability``) and ``scores.parquet``, one row per scored text, target and attack
(CONTRACT.md). Nothing written here holds a secret, a PII value or a generated text.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from distillguard import distributed
from distillguard.config import Spec
from distillguard.data.text import text_fingerprint
from distillguard.lm.probes.audit import audit_language_models
from distillguard.runs import RunDir, atomic_write_json
from distillguard.stages.common import execute_stage
from distillguard.stages.lm.common import model_hashes

OUTPUT = "audit"


def run_lm_audit_stage(spec: Spec, run: RunDir) -> bool:
    seed = spec.run.seed
    inputs = {**model_hashes(run, "teacher", "teacher"), **model_hashes(run, "distill", "student")}
    inputs["softlabels/softlabels.json"] = run.output_hash("label", "softlabels/softlabels.json")
    inputs.update({f"data.{role}": text_fingerprint(spec.data, role, seed=seed)
                   for role in ("members", "nonmembers", "transfer", "test", "canaries", "pii")})
    params = {"audit": spec.audit.fingerprint_params(), "data": spec.data.fingerprint_params(), "seed": seed,
              "student": spec.section_dict("student")}
    if distributed.batch_parts() > 1:  # the reference model trains data parallel, in parts
        params["batch_parts"] = distributed.batch_parts()

    def build(folder: Path) -> dict:
        os.chmod(folder, 0o700)  # per-text scores reveal who was a member
        metrics, rows = audit_language_models(spec, run)
        pq.write_table(pa.table(rows.columns), folder / "scores.parquet")
        atomic_write_json(folder / "metrics.json", metrics)
        return {"n_pool": 2 * metrics["populations"]["all"]["n_members"], "shadows": 0}

    return execute_stage(run, "audit", params=params, inputs=inputs, output=OUTPUT, build=build)
