"""The label stage of Split-AI self-distillation (SELENA, Tang et al. 2022, Sec. 4.2).

The transfer set is the members' own inputs: each member is labelled by the ``l``
sub-teachers that never trained on it (the Split-AI recognises it by its exact row), and
no public row is labelled. ``softlabels/`` then holds, besides the label shards, the
members' feature values without their label column (``inputs.npy``), so that the distill
stage reads only ``softlabels/`` and never a data file; the folder is owner-only.

What the student saw is recorded in the manifest and ``meta.json`` (:data:`TRANSFER_SET`)
and shown by report.json and the model card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillguard import progress
from distillguard.config import Spec
from distillguard.data import data_fingerprint, load_members
from distillguard.data.softlabel_shards import QUERIES, write_label_inputs, write_logit_shards, write_queries
from distillguard.models.artifact import load_classifier
from distillguard.runs import RunDir, atomic_write_json, read_json
from distillguard.seeding import derive_seed
from distillguard.stages.common import execute_stage

OUTPUT = "softlabels"

SELF_DISTILLATION = "split-ai self-distillation"
TRANSFER_SET = {
    "mechanism": SELF_DISTILLATION,
    "source": "the members' own inputs, each labelled by the Split-AI sub-teachers that never trained on it",
    "student_saw": "sensitive inputs (the members' feature values), never their labels",
    "public_rows": 0,
    "isolation": "the student saw the members' feature values, not their labels: each member's soft label comes "
                 "from sub-teachers that never trained on it. The student is not isolated from the sensitive "
                 "inputs; its evidence of privacy is the audit, whose shadows replay this self-distillation.",
}


def run_self_distill_label_stage(spec: Spec, run: RunDir) -> bool:
    """Label every trained member with its non-seeing sub-teachers; write the inputs beside the labels."""
    inputs = {
        "data.members": data_fingerprint(spec.data, "members"),
        "teacher/model.safetensors": run.output_hash("teacher", "teacher/model.safetensors"),
        "teacher/config.json": run.output_hash("teacher", "teacher/config.json"),
        "teacher/split.json": run.output_hash("teacher", "teacher/split.json"),
    }
    params = {"data": spec.data.fingerprint_params(), "seed": spec.run.seed, "temperature": 1.0,
              "softlabels": spec.section_dict("softlabels"), "transfer_set": SELF_DISTILLATION}

    def build(folder: Path) -> dict:
        teacher, _ = load_classifier(run / "teacher")
        _, members = load_members(spec.data, seed=spec.run.seed)
        trained = np.asarray(read_json(run / "teacher" / "split.json")["train_ids"], dtype=np.int64)
        X = members.X[np.isin(members.ids, trained)]  # every member, in file order (Split-AI holds none out)
        targets = self_distilled_targets(spec, teacher, X)
        ids = np.arange(len(X), dtype=np.int64)  # row i of inputs.npy
        shards = write_logit_shards(folder, ids=ids, logits_of=np.asarray, X=targets, shard_rows=spec.run.shard_rows)
        write_queries(folder, ids=ids, answered=np.ones(len(ids), dtype=bool))
        inputs_file = write_label_inputs(folder, X)
        atomic_write_json(folder / "meta.json", {
            "temperature": 1.0, "kind": "logits", "n_records": len(ids), "n_queries": len(ids), "queries": QUERIES,
            "softlabels": spec.section_dict("softlabels"), "n_classes": teacher.schema.n_classes,
            "teacher_sha256": inputs["teacher/model.safetensors"], "schema": teacher.schema.to_dict(),
            "shards": shards, "inputs": inputs_file, "transfer_set": TRANSFER_SET,
            "leak_guard": None, "leak_policy": "not applicable: the transfer inputs are the members' by design",
        })
        progress.log(f"label: Split-AI self-distillation labelled {len(ids)} members by their non-seeing sub-teachers")
        return {"n_records": len(ids), "n_queries": len(ids), "transfer_set": TRANSFER_SET,
                "leak_guard": {"policy": "not applicable (self-distillation)", "flagged": 0, "dropped": 0}}

    return execute_stage(run, "label", params=params, inputs=inputs, output=OUTPUT, build=build)


def self_distilled_targets(spec: Spec, teacher, X: np.ndarray) -> np.ndarray:
    """(n, C) float32: the Split-AI's answers on its own members, after the ``[softlabels]`` knobs.

    A member's row matches the Split-AI's exclusion table, so its answer is the mean of the
    ``l`` sub-teachers that never trained on it (models/split_ai.py).
    """
    from distillguard.train.release import release

    rows = spec.run.shard_rows
    logits = np.concatenate([np.asarray(teacher.logits(X[i:i + rows]), dtype=np.float32)
                             for i in range(0, len(X), rows)])
    if spec.softlabels.is_identity():
        return logits
    return release(logits, transfer_X=X, private_X=None, softlabels=spec.softlabels, transfer=spec.transfer,
                   seed=spec.run.seed, noise_seed=derive_seed(spec.run.seed, "softlabels")).targets
