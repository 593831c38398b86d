"""Text classification end to end: the built-in bbc-news on tiny models runs through the CLI,
the deploy bundle loads with plain ``transformers`` and predicts what distillguard's bundle
predicts (the report's student accuracy on the test texts), and a text file without its label
column is a one-line error, exit 2."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import torch

from distillguard import load_bundle
from distillguard.config import load_spec
from distillguard.data.text_roles import role_texts
from tests.conftest import run_cli

TINY = """
[data.sizes]
members = 60
nonmembers = 60
transfer = 100
test = 40
[data.text]
max_length = 24
vocab_size = 400
[teacher]
epochs = 3
[student]
epochs = 3
[audit]
shadows = 0
bootstrap = 10
"""


def test_bbc_news_runs_and_the_bundle_loads_with_plain_transformers(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    (tmp_path / "spec.toml").write_text('[run]\nname = "bbc"\n[data]\nbuiltin = "bbc-news"\n' + TINY)
    result = run_cli("run", "spec.toml", "--run-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # run exits 0 whatever the verdict (4: a bug)
    run = tmp_path / "out"
    report = json.loads((run / "report.json").read_text())
    spec = load_spec(run / "spec.toml")
    assert spec.teacher.kind == spec.student.kind == "hf-text"
    assert os.stat(run / "teacher").st_mode & 0o077 == 0
    assert {a["attack"] for a in report["attacks"]} >= {"loss", "confidence"}

    texts, labels, _, _ = role_texts(spec.data, "test", seed=0)
    bundle = load_bundle(run / "deploy")
    assert bundle.feature_names_ == ["text"] and list(bundle.classes_) == sorted(set(labels))
    probs = bundle.predict_proba(texts)
    accuracy = float((bundle.classes_[probs.argmax(1)] == labels.to_numpy()).mean())
    assert accuracy == report["utility"]["student"]["test_accuracy"]

    hf_dir = run / "deploy" / "hf"
    model = AutoModelForSequenceClassification.from_pretrained(str(hf_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    batch = tokenizer(texts, truncation=True, max_length=24, padding="max_length", return_tensors="pt")
    with torch.no_grad():
        hf_probs = torch.softmax(model(**batch).logits, dim=-1).numpy()
    np.testing.assert_allclose(hf_probs, probs, atol=1e-5)
    assert [model.config.id2label[i] for i in range(5)] == list(bundle.classes_)
    manifest = json.loads((run / "deploy" / "manifest.json").read_text())
    assert manifest["hf_folder"] == "hf" and manifest["hf_max_length"] == 24
    assert not (run / "deploy" / "teacher").exists()


def _text_files(folder, *, drop_test_label: bool = False) -> None:
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghijklmnop"), size=5)) for _ in range(200)]
    for role, n in {"members": 20, "nonmembers": 20, "transfer": 30, "test": 10}.items():
        frame = pd.DataFrame({"body": [" ".join(rng.choice(words, size=12)) for _ in range(n)],
                              "y": rng.choice(["a", "b"], size=n)})
        if role == "transfer" or (role == "test" and drop_test_label):
            frame = frame.drop(columns=["y"])
        frame.to_json(folder / f"{role}.jsonl", orient="records", lines=True)


SPEC = ('[run]\nname = "txt"\n[data]\nlabel = "y"\nmembers = "members.jsonl"\nnonmembers = "nonmembers.jsonl"\n'
        'transfer = "transfer.jsonl"\ntest = "test.jsonl"\nleak_policy = "drop"\n'
        '[data.text]\ncolumn = "body"\nmax_length = 16\nvocab_size = 300\n'
        '[teacher]\nepochs = 1\n[student]\nepochs = 1\n[audit]\nshadows = 0\nbootstrap = 0\n')


def test_jsonl_texts_run_with_a_dropped_copy(tmp_path):
    _text_files(tmp_path)
    transfer = pd.read_json(tmp_path / "transfer.jsonl", lines=True)
    transfer.loc[4, "body"] = pd.read_json(tmp_path / "members.jsonl", lines=True).loc[2, "body"]
    transfer.to_json(tmp_path / "transfer.jsonl", orient="records", lines=True)
    (tmp_path / "spec.toml").write_text(SPEC)
    result = run_cli("run", "spec.toml", "--run-dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # run exits 0 whatever the verdict (4: a bug)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stages"]["label"]["leak_guard"]["flagged"] == 1
    assert manifest["stages"]["label"]["n_records"] == 29  # transfer row 4 was never labelled
    assert load_bundle(tmp_path / "out" / "deploy").predict(["abcde fghij"]).shape == (1,)


def test_text_file_without_label_column_exits_2(tmp_path):
    _text_files(tmp_path, drop_test_label=True)
    (tmp_path / "spec.toml").write_text(SPEC)
    result = run_cli("run", "spec.toml", "--run-dir", "out", cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "test.jsonl" in lines[0] and "label column 'y'" in lines[0], result.stderr
    assert not (tmp_path / "out" / "teacher").exists()
