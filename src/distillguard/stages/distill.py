"""Stage 3: the student, trained from softlabels/ and the transfer inputs only.

This module reads exactly two things: the stored soft labels (or, for PATE, the released
noisy labels of the answered queries) and the transfer role of the data (or, with
``[transfer.synthetic]``, the DP synthetic rows the label stage wrote beside the labels). Under Split-AI
self-distillation the transfer inputs are the members' feature values, which the label
stage wrote into softlabels/ without their label column (``inputs.npy``): then this stage
reads softlabels/ alone, never a data file. It imports no
loader of members or nonmembers and never opens teacher/; the manifest's inputs for this
stage show it. Both are streamed, shard by shard: memory does not grow with the transfer
set (``benchmarks/bench_label_scale.py`` measures it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from distillguard import distributed, progress
from distillguard.config import Spec
from distillguard.data import data_fingerprint, iter_transfer, shard_numbers
from distillguard.data.softlabel_shards import (INPUTS, SYNTHETIC_INPUTS, LabelQueue, iter_label_inputs,
                                                iter_label_shards, read_query_ids)
from distillguard.data.types import Schema, Split
from distillguard.errors import ArtifactError
from distillguard.models.artifact import save_classifier
from distillguard.runs import RunDir, atomic_write_json, read_json
from distillguard.stages.common import checkpoint_store, execute_stage
from distillguard.train.rows import BlockRows, npy_loader, write_npy_block
from distillguard.train.student import StudentBlocks, train_student_on_blocks

OUTPUT = "student"


def run_distill_stage(spec: Spec, run: RunDir) -> bool:
    label_outputs = (run.stage("label") or {}).get("outputs", {})
    if not label_outputs:
        raise ArtifactError(f"{run / 'softlabels'}: no soft labels recorded in {run.manifest_path}; run the label stage first")
    inputs = {rel: run.output_hash("label", rel) for rel in sorted(label_outputs)}
    # Split-AI self-distillation keeps its inputs in softlabels/, and so does DP synthetic transfer data
    if f"softlabels/{INPUTS}" not in label_outputs and spec.transfer.synthetic is None:
        inputs["data.transfer"] = data_fingerprint(spec.data, "transfer")
    params = {"student": spec.section_dict("student"), "distill": spec.section_dict("distill"), "seed": spec.run.seed}
    if distributed.batch_parts() > 1:  # gradients in parts round differently from one piece
        params["batch_parts"] = distributed.batch_parts()
    if shard_numbers(read_query_ids(run / "softlabels"), spec.run.shard_rows) is not None:  # blocks shape the order
        params["shard_rows"] = spec.run.shard_rows

    checkpoints = checkpoint_store(spec, run, "distill")

    def build(folder: Path) -> dict:
        pate = read_json(run / "softlabels" / "meta.json").get("kind") == "labels"
        with tempfile.TemporaryDirectory(prefix=".distill-blocks-", dir=run.root) as scratch:
            data, schema, meta = stage_blocks(spec, run / "softlabels", Path(scratch))
            title = "distill: student on PATE's noisy labels" if pate else "distill: student on soft labels"
            with progress.task(title, spec.student.epochs) as advance:
                student, log = train_student_on_blocks(
                    data, schema=schema, cfg=spec.student, distill=None if pate else spec.distill,
                    seed=spec.run.seed, on_epoch=lambda e: advance(1), checkpoint=checkpoints.slot("student"))
        save_classifier(folder, student, extra={
            "role": "student", "distill": spec.section_dict("distill") if not pate else {"loss": "cross-entropy on PATE labels"},
            "teacher_sha256": meta["teacher_sha256"]})
        atomic_write_json(folder / "training_log.json", log)
        record = {"n_transfer": int(sum(data.rows.sizes))}
        if "student_saw" in meta.get("transfer_set", {}):  # self-distillation: the members' inputs, never labels
            record["student_inputs"] = meta["transfer_set"]["student_saw"]
        return record

    return execute_stage(run, "distill", params=params, inputs=inputs, output=OUTPUT, build=build,
                         checkpoints=checkpoints)


def _transfer_chunks(spec: Spec, softlabels: Path, schema: Schema):
    """The transfer inputs in shards: the transfer role, the DP synthetic rows the label stage
    wrote, or (Split-AI self-distillation) the members' inputs it wrote without their labels."""
    if read_json(softlabels / "meta.json").get("inputs") == INPUTS:
        yield from iter_label_inputs(softlabels, rows=spec.run.shard_rows)
        return
    if spec.transfer.synthetic is None:
        yield from iter_transfer(spec.data, schema=schema, seed=spec.run.seed, rows=spec.run.shard_rows)
        return
    X = np.load(softlabels / SYNTHETIC_INPUTS, allow_pickle=False)
    for start in range(0, len(X), spec.run.shard_rows):
        stop = min(start + spec.run.shard_rows, len(X))
        yield Split(X=X[start:stop], y=None, ids=np.arange(start, stop, dtype=np.int64))


def stage_blocks(spec: Spec, softlabels: Path, scratch: Path) -> tuple[StudentBlocks, Schema, dict]:
    """Join the label shards with the transfer inputs, one transfer shard at a time, into ``scratch``.

    Block b holds the labelled rows of transfer shard b (file rows ``b·shard_rows`` up to
    the next shard), as ``.npy`` files the student reads back one or two at a time; so
    memory is bounded by the shard size, not by the transfer set. Label shards must list
    their rows in file order (every label stage writes them so); anything else, or a row
    the transfer set lacks, means the labels are not of this transfer set.
    """
    meta = read_json(softlabels / "meta.json")
    schema = Schema.from_dict(meta["schema"])
    labels = LabelQueue(iter_label_shards(softlabels), softlabels)
    numbers, sizes = [], []
    for b, chunk in enumerate(_transfer_chunks(spec, softlabels, schema)):
        if not len(chunk):
            continue
        ids, targets = labels.take_through(int(chunk.ids[-1]))
        position = np.searchsorted(chunk.ids, ids)  # ids may skip rows (texts the leak guard dropped when read)
        if len(ids) and (position[-1] >= len(chunk) or not np.array_equal(chunk.ids[position], ids)):
            raise ArtifactError(f"{softlabels}: soft labels name records the transfer set lacks; rerun the label stage")
        if len(ids):
            write_npy_block(scratch, len(numbers), chunk.X[position], targets)
            numbers.append(b)
            sizes.append(len(ids))
    if labels.remaining():
        raise ArtifactError(f"{softlabels}: soft labels name records the transfer set lacks; rerun the label stage")
    if not sizes:
        raise ArtifactError(f"{softlabels}: no labelled transfer rows; nothing to distill")
    rows = BlockRows(npy_loader(scratch), [np.arange(n) for n in sizes])
    return StudentBlocks(rows, tuple(numbers)), schema, meta
