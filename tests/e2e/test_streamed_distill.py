"""The distill stage streams the label shards: blocks on disk train the in-memory student."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from distillguard.config import load_spec
from distillguard.errors import ArtifactError
from distillguard.models.artifact import load_classifier
from distillguard.runs import RunDir
from distillguard.stages.distill import run_distill_stage, stage_blocks
from distillguard.data.softlabel_shards import read_soft_labels
from distillguard.stages.label import run_label_stage
from distillguard.stages.teacher import run_teacher_stage
from distillguard.train.student import train_student
from tests.conftest import csv_spec_text

# every transfer row labeled (no far-from-private selection of the defended default), so shards are 250, 250, 100
MODELS = "[teacher]\nhidden = [32]\nepochs = 8\n[student]\nhidden = [16]\nepochs = 6\n[transfer]\nselect = \"all\"\n"


def _spec(tmp_path, shard_rows: int, extra: str = ""):
    path = tmp_path / f"spec-{shard_rows}.toml"
    path.write_text(csv_spec_text(extra=MODELS + extra).replace("seed = 0\n", f"seed = 0\nshard_rows = {shard_rows}\n"))
    return load_spec(path)


def _labelled_run(tmp_path, spec, name: str) -> RunDir:
    run = RunDir(tmp_path / name)
    run.root.mkdir()
    run_teacher_stage(spec, run)
    run_label_stage(spec, run)
    return run


def test_streamed_student_equals_the_in_memory_student_on_the_same_blocks(tmp_path, csv_splits):
    spec = _spec(tmp_path, 250)  # 600 transfer rows: shards of 250, 250 and 100
    run = _labelled_run(tmp_path, spec, "run")
    assert len(json.loads((run / "softlabels" / "meta.json").read_text())["shards"]) == 3
    assert run_distill_stage(spec, run) is True
    assert run.stage("distill")["params"]["shard_rows"] == 250  # the blocks shape the student: fingerprinted
    assert not list(run.root.glob(".distill-blocks-*"))  # the scratch blocks are gone
    streamed = load_classifier(run / "student")[0]

    ids, logits, schema, _ = read_soft_labels(run / "softlabels")
    transfer_X = pd.read_csv(csv_splits["transfer"]).to_numpy(np.float32)
    in_memory, _ = train_student(transfer_X[ids], logits, schema=schema, cfg=spec.student, distill=spec.distill,
                                 seed=spec.run.seed, block_ids=ids // 250)
    assert np.array_equal(streamed.scaler.mean, in_memory.scaler.mean)
    assert np.array_equal(streamed.scaler.scale, in_memory.scaler.scale)
    for (name, a), b in zip(streamed.model.state_dict().items(), in_memory.model.state_dict().values()):
        assert torch.equal(a, b), name
    # One block (the whole set within a shard) shuffles differently: another student.
    whole, _ = train_student(transfer_X[ids], logits, schema=schema, cfg=spec.student, distill=spec.distill,
                             seed=spec.run.seed)
    first = lambda clf: next(iter(clf.model.state_dict().values()))  # noqa: E731
    assert not torch.equal(first(whole), first(streamed))


def test_one_shard_keeps_the_fingerprint_and_the_student_of_an_unsharded_run(tmp_path, csv_splits):
    spec = _spec(tmp_path, 65536)
    run = _labelled_run(tmp_path, spec, "run")
    run_distill_stage(spec, run)
    assert "shard_rows" not in run.stage("distill")["params"]
    ids, logits, schema, _ = read_soft_labels(run / "softlabels")
    transfer_X = pd.read_csv(csv_splits["transfer"]).to_numpy(np.float32)
    in_memory, _ = train_student(transfer_X[ids], logits, schema=schema, cfg=spec.student, distill=spec.distill,
                                 seed=spec.run.seed)
    streamed = load_classifier(run / "student")[0]
    assert all(torch.equal(a, b) for a, b in zip(streamed.model.state_dict().values(),
                                                 in_memory.model.state_dict().values()))


def test_label_shards_out_of_file_order_are_refused(tmp_path, csv_splits):
    spec = _spec(tmp_path, 250)
    run = _labelled_run(tmp_path, spec, "run")
    meta_path = run / "softlabels" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["shards"] = meta["shards"][::-1]
    meta_path.write_text(json.dumps(meta))  # (the stage itself refuses a tampered meta.json: sha256 mismatch)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(ArtifactError, match="not in transfer-file order; rerun the label stage"):
        stage_blocks(spec, run / "softlabels", scratch)


def test_labels_of_rows_the_transfer_set_lacks_are_refused(tmp_path, csv_splits):
    spec = _spec(tmp_path, 250)
    run = _labelled_run(tmp_path, spec, "run")
    csv_splits["transfer"].write_text("\n".join(csv_splits["transfer"].read_text().splitlines()[:401]) + "\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(ArtifactError, match="soft labels name records the transfer set lacks"):
        stage_blocks(spec, run / "softlabels", scratch)


@pytest.mark.slow
def test_audit_replays_the_blocks_of_a_sharded_student(tmp_path, csv_splits):
    """Shadow students split and shuffle by shard as the real one does, so the audit fingerprints it."""
    from distillguard.api import run as run_pipeline

    spec = _spec(tmp_path, 250, extra="[audit]\nshadows = 4\ncanaries = 0\nbootstrap = 0\n")
    result = run_pipeline(spec, run_dir=tmp_path / "full")
    audit = RunDir(tmp_path / "full").stage("audit")
    assert audit["params"]["shard_rows"] == 250
    lira = next(a for a in result.report["attacks"] if a["attack"] == "lira_online" and a["target"] == "student"
                and a["population"] == "all")
    assert 0.0 <= lira["auc"] <= 1.0
