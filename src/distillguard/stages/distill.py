"""Stage 3: the student, trained from softlabels/ and the transfer inputs only.

This module reads exactly two things: the stored soft labels (or, for PATE, the released
noisy labels of the answered queries) and the transfer role of the data. It imports no loader of members or nonmembers and never opens teacher/; the
manifest's inputs for this stage show it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillguard import distributed, progress
from distillguard.config import Spec
from distillguard.data import data_fingerprint, load_role
from distillguard.errors import ArtifactError
from distillguard.models.artifact import save_classifier
from distillguard.runs import RunDir, atomic_write_json, read_json
from distillguard.stages.common import checkpoint_store, execute_stage
from distillguard.stages.label import read_noisy_labels, read_soft_labels
from distillguard.train.student import train_student, train_student_on_labels

OUTPUT = "student"


def run_distill_stage(spec: Spec, run: RunDir) -> bool:
    label_outputs = (run.stage("label") or {}).get("outputs", {})
    if not label_outputs:
        raise ArtifactError(f"{run / 'softlabels'}: no soft labels recorded in {run.manifest_path}; run the label stage first")
    inputs = {rel: run.output_hash("label", rel) for rel in sorted(label_outputs)}
    inputs["data.transfer"] = data_fingerprint(spec.data, "transfer")
    params = {"student": spec.section_dict("student"), "distill": spec.section_dict("distill"), "seed": spec.run.seed}
    if distributed.batch_parts() > 1:  # gradients in parts round differently from one piece
        params["batch_parts"] = distributed.batch_parts()

    checkpoints = checkpoint_store(spec, run, "distill")

    def build(folder: Path) -> dict:
        pate = read_json(run / "softlabels" / "meta.json").get("kind") == "labels"
        ids, targets, schema, meta = (read_noisy_labels if pate else read_soft_labels)(run / "softlabels")
        transfer = load_role(spec.data, "transfer", schema=schema, seed=spec.run.seed)
        position = {int(i): k for k, i in enumerate(transfer.ids)}
        if any(int(i) not in position for i in ids):
            raise ArtifactError(f"{run / 'softlabels'}: soft labels name records the transfer set lacks; rerun the label stage")
        transfer = transfer.subset(np.asarray([position[int(i)] for i in ids], dtype=np.int64))  # rows the guard kept
        if pate:  # PATE: cross-entropy on the noisy labels of the answered queries only
            with progress.task("distill: student on PATE's noisy labels", spec.student.epochs) as advance:
                student, log = train_student_on_labels(
                    transfer.X, targets, schema=schema, cfg=spec.student, seed=spec.run.seed,
                    on_epoch=lambda e: advance(1), checkpoint=checkpoints.slot("student"))
        else:
            with progress.task("distill: student on soft labels", spec.student.epochs) as advance:
                student, log = train_student(
                    transfer.X, targets, schema=schema, cfg=spec.student, distill=spec.distill,
                    seed=spec.run.seed, on_epoch=lambda e: advance(1), checkpoint=checkpoints.slot("student"),
                )
        save_classifier(folder, student, extra={
            "role": "student", "distill": spec.section_dict("distill") if not pate else {"loss": "cross-entropy on PATE labels"},
            "teacher_sha256": meta["teacher_sha256"]})
        atomic_write_json(folder / "training_log.json", log)
        return {"n_transfer": len(transfer)}

    return execute_stage(run, "distill", params=params, inputs=inputs, output=OUTPUT, build=build,
                         checkpoints=checkpoints)
