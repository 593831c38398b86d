"""Split-AI self-distillation (SELENA): labels from non-seeing sub-teachers, a student that sees inputs only."""

from __future__ import annotations

import copy
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

import distillguard.stages.distill as distill_stage
from distillguard.config import load_spec
from distillguard.data import load_members
from distillguard.data.softlabel_shards import read_soft_labels
from distillguard.models.artifact import load_classifier
from distillguard.models.split_ai import row_keys, training_rows
from distillguard.runs import RunDir
from distillguard.stages.label import run_label_stage
from distillguard.stages.self_distill import self_distilled_targets
from distillguard.stages.teacher import run_teacher_stage
from tests.conftest import TINY_MODELS, csv_spec_text, write_csv_splits

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster

SELF_DISTILL = "[teacher.split_ai]\nk = 3\nl = 1\nself_distill = true\n"


def _labelled_run(folder: Path):
    paths = write_csv_splits(folder)
    # soft labels: a NaN sub-teacher must show as NaN in the stored labels (an argmax would hide it)
    (folder / "spec.toml").write_text(csv_spec_text(extra=TINY_MODELS + SELF_DISTILL + '[softlabels]\nlabels = "soft"\n'))
    spec, run = load_spec(folder / "spec.toml"), RunDir(folder / "run")
    run.root.mkdir()
    run_teacher_stage(spec, run)
    run_label_stage(spec, run)
    return spec, run, paths


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return _labelled_run(tmp_path_factory.mktemp("self-distill"))


def test_each_member_is_labelled_by_sub_teachers_that_never_trained_on_it(labelled):
    """The defining property: NaN weights in sub-teacher t leave the labels of t's own members bit-identical."""
    spec, run, _ = labelled
    ids, stored, _, meta = read_soft_labels(run / "softlabels")
    X = np.load(run / "softlabels" / "inputs.npy")
    _, members = load_members(spec.data, seed=spec.run.seed)
    assert np.array_equal(ids, np.arange(len(members))) and meta["transfer_set"]["public_rows"] == 0
    teacher, _ = load_classifier(run / "teacher")
    assert np.array_equal(self_distilled_targets(spec, teacher, X), stored)  # what the student trains on
    split = teacher.model
    keys = row_keys(teacher.scaler.transform(X))
    rows = training_rows(keys, split.table_keys.numpy().view(np.uint64), split.excluded.numpy(), k=3)
    for t, seen in enumerate(rows):
        broken = copy.deepcopy(teacher)
        with torch.no_grad():
            for p in broken.model.members[t].parameters():
                p.fill_(float("nan"))
        after = self_distilled_targets(spec, broken, X)
        assert np.array_equal(after[seen], stored[seen])  # t trained on these: it takes no part in their labels
        unseen = np.setdiff1d(np.arange(len(X)), seen)
        assert len(unseen) and np.isnan(after[unseen]).all()  # t labels exactly the members it never saw
    # the labels are not the members' labels copied: the non-seeing sub-teachers disagree with some
    agreement = float((stored.argmax(1) == members.y).mean())
    assert 0.4 < agreement < 0.98, agreement


def test_student_stage_reads_member_inputs_without_labels_and_no_data_file(tmp_path):
    spec, run, paths = _labelled_run(tmp_path)
    _, members = load_members(spec.data, seed=spec.run.seed)
    inputs = np.load(run / "softlabels" / "inputs.npy", allow_pickle=False)
    assert inputs.shape == (200, 12) and np.array_equal(inputs, members.X.astype(np.float32))  # features only
    assert stat.S_IMODE((run / "softlabels").stat().st_mode) == 0o700  # it holds sensitive inputs now
    for path in paths.values():  # all four data files, transfer included: the student needs none of them
        path.unlink()
    for path in (run / "teacher").iterdir():
        path.unlink()
    assert distill_stage.run_distill_stage(spec, run) is True
    record = run.stage("distill")
    assert set(record["inputs"]) == {"softlabels/inputs.npy", "softlabels/meta.json", "softlabels/part-00000.parquet",
                                     "softlabels/queries.parquet"}
    assert record["n_transfer"] == 200 and "never their labels" in record["student_inputs"]
    assert run.stage("label")["transfer_set"]["mechanism"] == "split-ai self-distillation"
    assert (run / "student" / "model.safetensors").is_file()
