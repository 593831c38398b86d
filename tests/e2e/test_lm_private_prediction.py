"""Private prediction end to end: a tiny LM run whose label stage is a partitioned ensemble.

Three shard teachers fine-tuned from a public model (transfer text only), the mixture's
sampled tokens stored as top-k labels, ε in report.json and report.html.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_ARCH = "arch = { layers = 1, width = 64, heads = 2, context = 64 }\n"
SPEC = (
    '[run]\nname = "tiny-pp"\n[data]\nbuiltin = "pii-corpus"\n'
    "[data.pii_corpus]\nmember_bytes = 9000\nnonmember_bytes = 5000\ntest_bytes = 2000\ntransfer_bytes = 9000\n"
    "canaries_per_count = 1\npii_mentions = [4]\npii_people_per_count = 1\n"
    "[teacher]\nepochs = 3\nlr = 3e-3\n" + TINY_ARCH + "tokenizer = { vocab_size = 384 }\n"
    "[student]\nepochs = 1\nlr = 3e-3\n" + TINY_ARCH + "[distill]\ntop_k = 8\n"
    "[softlabels]\nprivate_prediction = { shards = 3, epsilon = 4.0, query_fraction = 0.5 }\n"
    "[audit]\nbootstrap = 10\n[audit.lm]\nexposure_references = 50\nreference_epochs = 1\nmia_texts = 20\n"
    "pii_records = 4\npii_samples = 1\npii_tokens = 8\nextraction_samples = 2\nextraction_tokens = 8\n"
    "extractable_texts = 3\nextractable_k = 16\nextractable_suffix = 8\ndivergence_samples = 1\n"
    "min_private_length = 12\n"
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distillguard", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def pp_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm-pp")
    (root / "spec.toml").write_text(SPEC)
    done = cli("run", "spec.toml", "--run-dir", "run", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]  # run exits 0 whatever the verdict (4: a bug)
    return root / "run"


def test_report_states_the_accounted_epsilon(pp_run):
    report = json.loads((pp_run / "report.json").read_text())
    privacy = report["privacy"]
    assert privacy["mechanism"] == "private-prediction" and privacy["shards"] == 3
    assert 0.99 * 4.0 <= privacy["epsilon"] <= 4.0  # the budget is spent, never overspent
    label = json.loads((pp_run / "manifest.json").read_text())["stages"]["label"]
    # half the positions are queries, drawn as the label stage counted them before answering (else it stops)
    assert 0.4 * label["n_tokens"] < privacy["queries"] < 0.6 * label["n_tokens"] and privacy["query_fraction"] == 0.5
    assert 0 < privacy["query_epsilon"] < 4.0 / 100 and 0 <= privacy["mean_lambda"] < 0.1
    assert "not itself private" in privacy["data_dependent"]["note"]
    assert 0 < privacy["data_dependent"]["epsilon"] <= privacy["epsilon"] + 1e-9
    html = (pp_run / "report.html").read_text()
    assert 'id="private-prediction"' in html and "data-independent" in html


def test_shard_teachers_and_public_model_stay_in_the_quarantined_teacher_folder(pp_run):
    manifest = json.loads((pp_run / "manifest.json").read_text())
    teacher = manifest["stages"]["teacher"]
    facts = teacher["private_prediction"]
    assert facts["shards"] == 3 and sum(facts["documents_per_shard"]) == teacher["n_train"]
    assert min(facts["documents_per_shard"]) > 0
    for i in range(3):
        assert (pp_run / "teacher" / "shards" / f"shard-{i:03d}" / "model.safetensors").is_file()
    assert (pp_run / "teacher" / "public" / "model.safetensors").is_file()
    assert (pp_run / "teacher" / "shards").stat().st_mode & 0o077 == 0
    # the one model beside the labels is the public model (transfer text only), byte for byte
    copied = list((pp_run / "softlabels").rglob("*.safetensors"))
    assert copied == [pp_run / "softlabels" / "public-model" / "model.safetensors"]
    assert copied[0].read_bytes() == (pp_run / "teacher" / "public" / "model.safetensors").read_bytes()
    assert json.loads((pp_run / "softlabels" / "softlabels.json").read_text())["release"] == "private-prediction"
    assert not any(name.startswith("teacher") for name in manifest["stages"]["distill"]["inputs"])
    label_inputs = manifest["stages"]["label"]["inputs"]
    assert "teacher/shards/shard-002/model.safetensors" in label_inputs and "teacher/public/config.json" in label_inputs


def test_the_student_starts_from_the_public_model_and_the_report_shows_what_the_labels_added(pp_run):
    manifest = json.loads((pp_run / "manifest.json").read_text())
    assert manifest["stages"]["distill"]["start"] == "public model"
    utility = json.loads((pp_run / "report.json").read_text())["utility"]
    assert utility["student_start"] == "public model"
    public, student = utility["public_model"]["test_perplexity"], utility["student"]["test_perplexity"]
    # one epoch on the release's labels (the public model's distribution almost everywhere) moves it a little
    assert student != public and 0.8 < student / public < 1.25
    assert "public model (transfer text only; the student&#39;s start)" in (pp_run / "report.html").read_text() \
        or "public model (transfer text only; the student's start)" in (pp_run / "report.html").read_text()
    attacks = {(a["target"], a["attack"]): a for a in json.loads((pp_run / "report.json").read_text())["attacks"]}
    # the public model is also the student's sharpest reference: both models are scored against it
    assert {("student", "public_reference"), ("teacher", "public_reference")} <= set(attacks)
    assert 0.0 <= attacks[("student", "public_reference")]["auc"] <= 1.0
    card = (pp_run / "deploy" / "README.md").read_text()
    assert "public model (transfer text only; this student's start)" in card
