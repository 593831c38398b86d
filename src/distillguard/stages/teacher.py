"""Stage 1: the teacher, trained on the members (or loaded) into the quarantined teacher/."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from distillguard import distributed, progress
from distillguard.config import Spec
from distillguard.data import data_fingerprint, load_members, load_role
from distillguard.data.preprocessing import Standardizer
from distillguard.train.dp import DPSettings, train_teacher_dp
from distillguard.errors import DataError
from distillguard.models.artifact import load_classifier, save_classifier
from distillguard.runs import RunDir, atomic_write_json, sha256_file
from distillguard.stages.common import checkpoint_store, execute_stage
from distillguard.train.teacher import train_teacher

OUTPUT = "teacher"


def run_teacher_stage(spec: Spec, run: RunDir) -> bool:
    """Train or load the teacher; writes teacher/{model.safetensors, config.json, split.json, training_log.json}."""
    inputs = _inputs(spec)
    params = {"teacher": spec.section_dict("teacher"), "data": spec.data.fingerprint_params(), "seed": spec.run.seed,
              "privacy": spec.section_dict("privacy")}
    if distributed.batch_parts() > 1:  # gradients in parts round differently from one piece
        params["batch_parts"] = distributed.batch_parts()

    checkpoints = checkpoint_store(spec, run, "teacher")

    def build(folder: Path) -> dict:
        os.chmod(folder, 0o700)  # quarantined: the teacher memorizes the members
        schema, members = load_members(spec.data, seed=spec.run.seed)
        privacy = None
        if spec.teacher.path is not None:
            clf, config = load_classifier(Path(spec.teacher.path))
            _check_schema(clf.schema, schema, Path(spec.teacher.path))
            train_rows, val_rows, log, source = np.arange(len(members)), np.array([], dtype=np.int64), [], "loaded"
        elif spec.privacy.mechanism == "dp-sgd":
            # Standardize with public statistics (the transfer set): member statistics would
            # fall outside the accounting. No checkpoint selection on private data either.
            transfer = load_role(spec.data, "transfer", schema=schema, seed=spec.run.seed)
            with progress.task("teacher: DP-SGD on members", spec.teacher.epochs) as advance:
                dp = DPSettings.from_privacy(spec.privacy)
                result = train_teacher_dp(members, schema=schema, cfg=spec.teacher, dp=dp,
                                          seed=spec.run.seed, public_scaler=Standardizer.fit(transfer.X),
                                          on_epoch=lambda e: advance(1), checkpoint=checkpoints.slot("teacher"))
            clf, log, source = result.classifier, result.log, "trained (dp-sgd)"
            train_rows, val_rows = np.arange(len(members)), np.array([], dtype=np.int64)
            privacy = result.privacy_record()
            atomic_write_json(folder / "privacy.json", privacy)
        elif spec.privacy.mechanism == "pate":
            clf, log = _train_ensemble(spec, schema, members, checkpoints, n_teachers=spec.privacy.teachers)
            train_rows, val_rows, source = np.arange(len(members)), np.array([], dtype=np.int64), "trained (pate ensemble)"
        elif spec.teacher.split_ai is not None or spec.teacher.ensemble > 1:  # every member is trained on
            clf, log, source = _train_sub_teachers(spec, schema, members, checkpoints)
            train_rows, val_rows = np.arange(len(members)), np.array([], dtype=np.int64)
        else:
            with progress.task("teacher: training on members", spec.teacher.epochs) as advance:
                result = train_teacher(members, schema=schema, cfg=spec.teacher, seed=spec.run.seed,
                                       on_epoch=lambda e: advance(1), checkpoint=checkpoints.slot("teacher"))
            clf, train_rows, val_rows, log, source = result.classifier, result.train_rows, result.val_rows, result.log, "trained"
        save_classifier(folder, clf, extra={"role": "teacher", "source": source})
        atomic_write_json(folder / "split.json", {
            "train_ids": members.ids[train_rows].tolist(), "val_ids": members.ids[val_rows].tolist(),
            "note": "val_ids were held out for checkpoint selection and never trained on",
        })
        atomic_write_json(folder / "training_log.json", log)
        record = {"source": source, "n_train": int(len(train_rows)), "n_val": int(len(val_rows)), "privacy": privacy}
        if spec.data.is_table():  # the roles cut from one table: rows here (owner-only), summary in the manifest
            from distillguard.data.sources import split_record

            split = split_record(spec.data, seed=spec.run.seed)
            atomic_write_json(folder / "data_split.json", split)
            record["data_split"] = split["summary"]
        return record

    return execute_stage(run, "teacher", params=params, inputs=inputs, output=OUTPUT, build=build,
                         checkpoints=checkpoints)


def _inputs(spec: Spec) -> dict[str, str]:
    """What the teacher reads: the members, a loaded teacher, and the transfer set where it
    gives the public scaler, the encoder of a mixed-type table or the tokenizer of labelled texts."""
    inputs = {"data.members": data_fingerprint(spec.data, "members")}
    if spec.teacher.path is not None:
        inputs["teacher.path"] = sha256_file(_weights(spec.teacher.path))
    if (spec.privacy.mechanism in ("dp-sgd", "pate") or spec.teacher.ensemble > 1 or spec.teacher.split_ai is not None
            or spec.data.is_text_classification()
            or (spec.data.builtin is None and not spec.data.is_table()
                and spec.data.resolved_format() in ("csv", "parquet"))):
        inputs["data.transfer"] = data_fingerprint(spec.data, "transfer")
    return inputs


def _train_ensemble(spec: Spec, schema, members, checkpoints, *, n_teachers: int) -> tuple:
    """``n_teachers`` models on disjoint partitions, stored as one :class:`Ensemble`.

    PATE votes with them; the non-private ``[teacher] ensemble`` releases their averaged
    probabilities (subsample-and-aggregate), which one record moves by at most 1/n.

    The scaler is fitted on the public transfer inputs (a member-fitted one would let one
    record move every teacher) and no teacher selects checkpoints on private data. Every
    member is trained on by exactly one teacher, so all of them are audit members.
    """
    from distillguard.train.pate import as_ensemble, partition_groups, train_teacher_ensemble

    transfer = load_role(spec.data, "transfer", schema=schema, seed=spec.run.seed)
    total = spec.teacher.epochs * partition_groups(len(members), n_teachers) if n_teachers <= len(members) else 1
    with progress.task(f"teacher: {n_teachers} teachers on partitions", total) as advance:
        teachers = train_teacher_ensemble(members, schema=schema, cfg=spec.teacher, n_teachers=n_teachers,
                                          seed=spec.run.seed, scaler=Standardizer.fit(transfer.X),
                                          batched=None if spec.audit.batched else False,
                                          on_epoch=lambda e: advance(1), checkpoint=checkpoints.slot("teacher"))
    log = [{"teachers": n_teachers, "epochs": spec.teacher.epochs, "partition_sizes":
            sorted({int(len(members) // n_teachers), int(-(-len(members) // n_teachers))}),
            "checkpoint": "last epoch (no selection on private data)"}]
    return as_ensemble(teachers), log


def _train_sub_teachers(spec: Spec, schema, members, checkpoints) -> tuple:
    """(classifier, log, source) of a Split-AI teacher or a ``[teacher] ensemble``."""
    split = spec.teacher.split_ai
    if split is not None:
        return (*_train_split_ai(spec, schema, members, checkpoints), f"trained (split-ai, k = {split.k}, l = {split.l})")
    clf, log = _train_ensemble(spec, schema, members, checkpoints, n_teachers=spec.teacher.ensemble)
    return clf, log, f"trained (ensemble of {spec.teacher.ensemble})"


def _train_split_ai(spec: Spec, schema, members, checkpoints) -> tuple:
    """SELENA's Split-AI: k sub-teachers, every member left out of l of them (train/split_ai.py).

    The scaler is fitted on the public transfer inputs, as for the partition ensembles (on
    the members under ``self_distill``, which uses no public row), and the sub-teachers keep
    their last epoch. Every member is trained on (by k - l of them),
    so all are audit members.
    """
    from distillguard.train.split_ai import train_split_ai

    split = spec.teacher.split_ai
    # Self-distillation uses no public row: the scaler's statistics are the members' (as the student's are).
    public = None if split.self_distill else load_role(spec.data, "transfer", schema=schema, seed=spec.run.seed)
    with progress.task(f"teacher: Split-AI, {split.k} sub-teachers", None) as advance:  # 1-2 groups of sizes
        clf = train_split_ai(members, schema=schema, cfg=spec.teacher, seed=spec.run.seed,
                             scaler=Standardizer.fit(members.X if public is None else public.X),
                             batched=None if spec.audit.batched else False,
                             on_epoch=lambda e: advance(1), checkpoint=checkpoints.slot("teacher"))
    log = [{"split_ai": {"k": split.k, "l": split.l, "self_distill": split.self_distill,
                         "scaler": "members" if public is None else "public transfer inputs"}, "epochs": spec.teacher.epochs,
            "members_per_sub_teacher": round(len(members) * (split.k - split.l) / split.k),
            "checkpoint": "last epoch (no selection on private data)"}]
    return clf, log


def _weights(path: Path) -> Path:
    weights = Path(path) / "model.safetensors"
    if not weights.is_file():
        raise DataError(f"{weights}: [teacher].path has no model.safetensors; expected a distillguard teacher folder")
    return weights


def _check_schema(loaded, expected, path: Path) -> None:
    if loaded.feature_names != expected.feature_names:
        raise DataError(
            f"{path}: the loaded teacher expects {loaded.n_features} features "
            f"({loaded.feature_names[:3]}…), the members file has {expected.n_features} ({expected.feature_names[:3]}…)"
        )
    if (loaded.encoding or {}).get("kind") == "text" and loaded.encoding != expected.encoding:
        raise DataError(f"{path}: the loaded teacher's tokenizer or max_length differs from this run's texts' "
                        "([data.text]); a text teacher is loaded with the data settings it was trained with")
    if loaded.classes != expected.classes:
        raise DataError(f"{path}: the loaded teacher's classes {loaded.classes[:10]} differ from the members' {expected.classes[:10]}")
