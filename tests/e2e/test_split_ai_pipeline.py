"""A Split-AI teacher in the whole pipeline: what teacher/ holds, what is released, what the audit sees."""

from __future__ import annotations

import numpy as np

import distillguard
from distillguard.attack_names import LABEL_ONLY_ATTACKS
from distillguard.config import load_spec
from distillguard.data import load_members, load_role
from distillguard.data.softlabel_shards import read_soft_labels
from distillguard.models.artifact import load_classifier
from distillguard.runs import read_json

SPEC = (
    '[run]\nname = "split-ai"\n[data]\nbuiltin = "purchase-synth"\n'
    "[data.sizes]\nmembers = 150\nnonmembers = 150\ntransfer = 400\ntest = 200\n"
    "[data.synth]\nfeatures = 80\nclasses = 10\nclusters = 5\n"
    "[teacher]\nhidden = [64]\nepochs = 12\n[teacher.split_ai]\nk = 4\nl = 2\n"
    "[student]\nhidden = [32]\nepochs = 10\n"
    "[audit]\nshadows = 4\ncanaries = 0\nbootstrap = 0\n"
)


def test_split_ai_run_releases_routed_answers_and_hides_its_members(tmp_path) -> None:
    (tmp_path / "spec.toml").write_text(SPEC)
    result = distillguard.run(tmp_path / "spec.toml", run_dir=tmp_path / "run")
    run = tmp_path / "run"
    manifest = read_json(run / "manifest.json")["stages"]
    assert manifest["teacher"]["params"]["teacher"]["split_ai"] == {"k": 4, "l": 2}
    teacher, config = load_classifier(run / "teacher")
    assert config["source"] == "trained (split-ai, k = 4, l = 2)" and config["architecture"]["n_keys"] == 150

    # The released labels are the Split-AI's routed answers on the public transfer rows.
    spec = load_spec(run / "spec.toml")
    ids, targets, schema, _ = read_soft_labels(run / "softlabels")
    transfer = load_role(spec.data, "transfer", schema=schema, seed=0)
    position = {int(i): k for k, i in enumerate(transfer.ids)}
    expected = teacher.logits(transfer.X[[position[int(i)] for i in ids]])
    assert np.allclose(targets, expected, atol=1e-5)

    # Members are answered by sub-teachers that never saw them: the teacher is about as
    # accurate on its members as on the test set, and the attacks on it are near chance.
    _, members = load_members(spec.data, seed=0)
    member_accuracy = float((teacher.logits(members.X).argmax(1) == members.y).mean())
    test_accuracy = result.report["utility"]["teacher"]["test_accuracy"]
    assert member_accuracy < test_accuracy + 0.1, (member_accuracy, test_accuracy)  # a plain teacher: ~1.0 vs 0.69
    teacher_auc = {a["attack"]: a["auc"] for a in result.report["attacks"]
                   if a["target"] == "teacher" and a["population"] == "all"}
    on_the_record = {k: v for k, v in teacher_auc.items() if k not in LABEL_ONLY_ATTACKS}
    assert max(on_the_record.values()) < 0.62, teacher_auc  # a plain teacher of this recipe: up to 0.67
    # Noisy copies of a member are not the member: the keyed hash routes them to any l sub-teachers,
    # often ones that trained on it, so label_noise sees past the exclusion (docs/defenses/split-ai.md).
    assert "label_noise" in teacher_auc  # reported beside them (0.635 against <= 0.54 when measured)
    distill_inputs = manifest["distill"]["inputs"]
    assert not any("members" in k or "nonmembers" in k for k in distill_inputs)
