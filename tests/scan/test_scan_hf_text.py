"""distillguard scan on a tiny Hugging Face sequence classifier fine-tuned by the test (bbc-news texts)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from scan_support import recompute

import distillguard
from distillguard.config import load_spec

SIZES = "[data.sizes]\nmembers = 60\nnonmembers = 60\ntransfer = 100\ntest = 40\n"


def _spec(folder, tokenizer_dir, scan: str = "") -> object:
    path = folder / "scan.toml"
    path.write_text('[run]\nname = "hf"\n[data]\nbuiltin = "bbc-news"\n' + SIZES
                    + f'[data.text]\nmax_length = 24\ntokenizer = "{tokenizer_dir}"\n'
                    + "[audit]\nbootstrap = 10\nreference_models = 0\n" + scan)
    return path


def _fine_tune(spec_path, folder) -> None:
    """A 1-layer GPT-2 classifier trained to memorize the 60 members, saved with save_pretrained."""
    from distillguard.config.lm import LMArchConfig
    from distillguard.data import load_members
    from distillguard.lm.tokenizer import load_tokenizer
    from distillguard.models.text import build_text_classifier, save_hf_text_classifier, text_architecture

    spec = load_spec(spec_path)
    schema, members = load_members(spec.data, seed=0)
    tokenizer = load_tokenizer(folder)
    arch = text_architecture(LMArchConfig(layers=1, width=32, heads=2), max_length=24, n_classes=len(schema.classes),
                             vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id, bos_id=tokenizer.bos_token_id)
    torch.manual_seed(0)
    model = build_text_classifier(arch)
    X, y = torch.from_numpy(members.X.astype(np.int64)), torch.from_numpy(members.y.astype(np.int64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        optimizer.step()
    model.eval()
    save_hf_text_classifier(model, tokenizer, folder, classes=schema.classes)


def test_scan_of_a_fine_tuned_hf_sequence_classifier(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distillguard.data.text_roles import role_texts
    from distillguard.lm.tokenizer import save_tokenizer, train_bpe_tokenizer

    model_dir = tmp_path / "hf-model"
    probe = _spec(tmp_path, model_dir)
    public, *_ = role_texts(_public_data(tmp_path), "transfer", seed=0)
    save_tokenizer(train_bpe_tokenizer(public, vocab_size=400), model_dir)
    _fine_tune(probe, model_dir)
    result = distillguard.scan(_spec(tmp_path, model_dir, f'[scan]\nmodel = "{model_dir}"\n'), run_dir=tmp_path / "run")
    report = json.loads((result.run_dir / "report.json").read_text())
    scores = pd.read_parquet(result.run_dir / "audit" / "scores.parquet")
    for row in report["attacks"]:
        auc, tpr = recompute(scores, row)
        assert row["auc"] == pytest.approx(auc, abs=1e-6)
        assert row["tpr_at_fpr"]["0.01"] is None  # 60 non-members cannot resolve 1 % FPR
    loss = next(a for a in report["attacks"] if a["attack"] == "loss")
    assert loss["auc"] > 0.7  # 60 epochs on 60 articles: the model memorizes its members
    # the scanned loss of a member is plain transformers' log-probability of its label on the raw text
    spec = load_spec(result.run_dir / "spec.toml")
    texts, labels, ids, _ = role_texts(spec.data, "members", seed=0)
    hf = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    batch = tokenizer(texts[:5], truncation=True, max_length=24, padding="max_length", return_tensors="pt")
    with torch.no_grad():
        logp = torch.log_softmax(hf(**batch).logits, dim=-1).numpy()
    label_ids = [hf.config.label2id[str(label)] for label in labels[:5]]
    mine = scores[(scores.attack == "loss")].set_index("example_id").score
    for i in range(5):
        assert mine[f"members:{ids[i]}"] == pytest.approx(logp[i, label_ids[i]], abs=1e-4)


def _public_data(tmp_path):
    """[data] of the built-in without a tokenizer, to read its public (transfer) texts."""
    path = tmp_path / "public.toml"
    path.write_text('[run]\nname = "p"\n[data]\nbuiltin = "bbc-news"\n' + SIZES + "[data.text]\nmax_length = 24\n")
    return load_spec(path).data
