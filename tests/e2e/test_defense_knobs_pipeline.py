"""The defense knobs in the pipeline: what the label stage releases, and the shadows replay it."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import distillguard
from distillguard.audit.shadows import AuditPool, paired_membership, replay_releases
from distillguard.config import TeacherConfig, parse_spec
from distillguard.data import load_role
from distillguard.data.types import Schema, Split
from distillguard.models.artifact import load_classifier
from distillguard.runs import read_json
from distillguard.data.softlabel_shards import read_soft_labels
from distillguard.train.label_defenses import softmax
from distillguard.train.teacher import train_teacher

KNOB_SPEC = (
    '[run]\nname = "knobs"\n[data]\nbuiltin = "purchase-synth"\n'
    "[data.sizes]\nmembers = 150\nnonmembers = 150\ntransfer = 400\ntest = 200\n"
    "[data.synth]\nfeatures = 80\nclasses = 10\nclusters = 5\n"
    "[teacher]\nhidden = [64]\nepochs = 15\nlabel_smoothing = 0.05\n[student]\nhidden = [32]\nepochs = 15\n"
    "[softlabels]\ntop_k = 2\nmix_uniform = 0.1\n"
    '[transfer]\nselect = "low_entropy"\nkeep_fraction = 0.5\n'
    "[audit]\nshadows = 4\ncanaries = 0\nbootstrap = 0\n"
)


def test_label_stage_releases_the_selected_records_with_the_knobs_applied(tmp_path) -> None:
    (tmp_path / "spec.toml").write_text(KNOB_SPEC)
    result = distillguard.run(tmp_path / "spec.toml", run_dir=tmp_path / "run")
    run = tmp_path / "run"
    ids, targets, schema, meta = read_soft_labels(run / "softlabels")
    queries = pq.read_table(run / "softlabels" / "queries.parquet").to_pandas()
    assert len(queries) == meta["n_queries"] == 400 and queries["answered"].sum() == len(ids) == 200
    assert set(queries.loc[queries["answered"], "example_id"]) == set(ids.tolist())

    # The released rows are the 200 the teacher is surest about, and what was released is
    # top-2 mixed with the uniform: a floor of 0.1/10 on every class, two classes above it.
    teacher, _ = load_classifier(run / "teacher")
    transfer = load_role(distillguard.config.load_spec(run / "spec.toml").data, "transfer", schema=schema, seed=0)
    p = softmax(teacher.logits(transfer.X))
    entropy = -(p * np.log(p)).sum(axis=1)
    assert set(transfer.ids[np.argsort(entropy)[:200]].tolist()) == set(ids.tolist())
    released = softmax(targets)
    assert released.min() == pytest.approx(0.01, abs=1e-6)
    assert ((released > 0.01 + 1e-6).sum(axis=1) <= 2).all()

    # The student saw only softlabels/ and the transfer data; the audit replayed the release.
    distill_inputs = read_json(run / "manifest.json")["stages"]["distill"]["inputs"]
    assert not any("members" in k or "nonmembers" in k or "test" in k for k in distill_inputs)
    assert result.report["utility"]["student"]["test_accuracy"] > 0.3
    assert {a["attack"] for a in result.report["attacks"]} >= {"lira_online", "loss"}


def test_shadows_replay_selection_on_their_own_teachers_and_noise() -> None:
    rng = np.random.default_rng(0)
    S, n, C = 4, 60, 5
    logits = rng.normal(scale=3.0, size=(S, n, C))
    pool = AuditPool(X=rng.normal(size=(40, 3)), y=rng.integers(0, C, 40), is_member=np.r_[np.ones(20, bool), np.zeros(20, bool)],
                     example_ids=[str(i) for i in range(40)])
    spec = parse_spec({"softlabels": {"logit_noise": 1.0}, "transfer": {"select": "low_entropy", "keep_fraction": 0.5}},
                      base_dir=".")
    releases = replay_releases(logits, transfer_X=rng.normal(size=(n, 3)), pool=pool, canaries=None,
                               membership=paired_membership(40, S, seed=0), spec=spec)
    assert [len(r.rows) for r in releases] == [30] * S
    assert len({tuple(r.rows) for r in releases}) > 1  # each shadow teacher picks its own confident records
    for z, r in zip(logits, releases):
        entropy = -(softmax(z) * np.log(softmax(z))).sum(axis=1)
        assert set(r.rows) == set(np.argsort(entropy)[:30])
        assert not np.allclose(softmax(r.targets), softmax(z[r.rows]), atol=1e-3)  # noised
    # Plain KD's release (soft labels, no knob): the shadows release exactly their teachers' logits on every record.
    plain = replay_releases(logits, transfer_X=np.zeros((n, 3)), pool=pool, canaries=None,
                            membership=paired_membership(40, S, seed=0),
                            spec=parse_spec({"softlabels": {"labels": "soft"}}, base_dir="."))
    assert all(np.array_equal(r.rows, np.arange(n)) and np.allclose(r.targets, z) for r, z in zip(plain, logits))


def test_label_smoothing_caps_the_teachers_confidence_on_members() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 10)).astype(np.float32)
    y = X[:, :4].argmax(axis=1)  # a learnable rule: a plain teacher grows confident
    members = Split(X=X, y=y, ids=np.arange(200))
    schema = Schema(feature_names=[f"f{i}" for i in range(10)], classes=["a", "b", "c", "d"], input_shape=(10,))
    confidence = {}
    for smoothing in (0.0, 0.3):
        cfg = TeacherConfig(hidden=[128], epochs=60, val_fraction=0.0, lr=3e-3, label_smoothing=smoothing)
        clf = train_teacher(members, schema=schema, cfg=cfg, seed=0).classifier
        confidence[smoothing] = softmax(clf.logits(X))[np.arange(200), y].mean()
    assert confidence[0.0] > 0.9
    assert confidence[0.3] < 1 - 0.3 + 0.3 / 4 + 0.02 < confidence[0.0]  # the smoothed target's p_y is 0.775


def test_knob_spec_errors_name_the_field(tmp_path) -> None:
    from distillguard.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[transfer\]: .*keep_fraction"):
        parse_spec({"transfer": {"keep_fraction": 0.5}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"\[softlabels\]\.mix_uniform"):
        parse_spec({"softlabels": {"mix_uniform": 2.0}}, base_dir=tmp_path)


def test_teacher_ensemble_releases_the_averaged_probabilities_of_disjoint_teachers(tmp_path) -> None:
    import torch

    from distillguard.train.label_defenses import average_ensemble

    spec = KNOB_SPEC.replace("label_smoothing = 0.05", "ensemble = 3").replace(
        "[softlabels]\ntop_k = 2\nmix_uniform = 0.1\n", '[softlabels]\nlabels = "soft"\n').replace(
        '[transfer]\nselect = "low_entropy"\nkeep_fraction = 0.5\n', "")
    (tmp_path / "spec.toml").write_text(spec)
    report = distillguard.run(tmp_path / "spec.toml", run_dir=tmp_path / "run").report
    run = tmp_path / "run"
    assert report["teacher"]["source"] == "trained (ensemble of 3)"
    ids, targets, schema, _ = read_soft_labels(run / "softlabels")
    teacher, _ = load_classifier(run / "teacher")
    transfer = load_role(distillguard.config.load_spec(run / "spec.toml").data, "transfer", schema=schema, seed=0)
    X = torch.from_numpy(teacher.scaler.transform(transfer.X[:50]))
    with torch.no_grad():
        members = np.stack([m(X).double().numpy() for m in teacher.model.members])  # (3, 50, C)
    assert len(members) == 3
    np.testing.assert_allclose(softmax(targets[:50]), softmax(average_ensemble(members)), atol=1e-5)
    split = read_json(run / "teacher" / "split.json")
    assert len(split["train_ids"]) == 150 and not split["val_ids"]  # every member trains exactly one teacher
    assert {a["attack"] for a in report["attacks"]} >= {"lira_online"}


def test_ensemble_with_a_privacy_mechanism_is_a_spec_error(tmp_path) -> None:
    from distillguard.errors import ConfigError

    with pytest.raises(ConfigError, match=r"ensemble = 4 is the non-private ensemble"):
        parse_spec({"teacher": {"ensemble": 4}, "privacy": {"mechanism": "pate"}}, base_dir=tmp_path)
