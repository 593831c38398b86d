"""Hugging Face text classifiers on token-id rows: shapes, the pad mask, plain-transformers folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distillguard.config.lm import LMArchConfig
from distillguard.errors import ArtifactError
from distillguard.lm.tokenizer import train_bpe_tokenizer
from distillguard.models.classifiers import build_model
from distillguard.models.text import (encode_texts, load_hf_text_classifier, save_hf_text_classifier,
                                      text_architecture)

TEXTS = ["the match ended in a late goal", "the new phone has a faster chip", "the chef cooked a spicy soup",
         "a striker scored twice in the final"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(TEXTS, vocab_size=300)


def _arch(tokenizer, *, family="gpt2", max_length=24):
    return text_architecture(LMArchConfig(family=family, layers=2, width=32, heads=2), max_length=max_length,
                             n_classes=3, vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_forward_shape_and_padding_does_not_change_logits(tokenizer, family):
    model = build_model(_arch(tokenizer, family=family, max_length=32), seed=3).eval()
    short = encode_texts(tokenizer, TEXTS[:4], max_length=24)
    assert short.shape == (4, 24) and short.dtype == np.int32
    assert (short == tokenizer.pad_token_id).any(axis=1).all()  # every row is padded
    with torch.no_grad():
        logits = model(torch.from_numpy(short).float())
        assert logits.shape == (4, 3)
        # the same texts with 8 more pad positions: same logits
        padded = encode_texts(tokenizer, TEXTS[:4], max_length=32)
        assert (padded[:, :24] == short).all() and (padded[:, 24:] == tokenizer.pad_token_id).all()
        torch.testing.assert_close(model(torch.from_numpy(padded)), logits, atol=1e-5, rtol=1e-5)
        # and a text alone gives what it gives in a batch of longer texts
        torch.testing.assert_close(model(torch.from_numpy(short[2:3])), logits[2:3], atol=1e-5, rtol=1e-5)
        # changing a real token does change them (the mask does not hide the text)
        edited = short.copy()
        edited[:, 1] = (edited[:, 1] + 7) % len(tokenizer)
        assert not torch.allclose(model(torch.from_numpy(edited)), logits)


def test_same_seed_same_weights_and_truncation(tokenizer):
    a, b = (build_model(_arch(tokenizer), seed=5) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    ids = encode_texts(tokenizer, [" ".join(TEXTS[:10])], max_length=24)
    assert ids.shape == (1, 24) and (ids != tokenizer.pad_token_id).all()  # truncated, not padded


def test_saved_folder_loads_with_plain_transformers(tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = build_model(_arch(tokenizer), seed=1).eval()
    save_hf_text_classifier(model, tokenizer, tmp_path, classes=["food", "sport", "tech"])
    hf = AutoModelForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    tok = AutoTokenizer.from_pretrained(str(tmp_path))
    batch = tok(TEXTS[:4], truncation=True, max_length=24, padding="max_length", return_tensors="pt")
    ours = torch.from_numpy(encode_texts(tokenizer, TEXTS[:4], max_length=24))
    assert torch.equal(batch["input_ids"], ours.long())
    with torch.no_grad():
        torch.testing.assert_close(hf(**batch).logits, model(ours), atol=1e-5, rtol=1e-5)
    assert hf.config.id2label == {0: "food", 1: "sport", 2: "tech"}
    loaded, loaded_tok = load_hf_text_classifier(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(torch.from_numpy(encode_texts(loaded_tok, TEXTS[:4], max_length=24))),
                                   model(ours), atol=1e-5, rtol=1e-5)


def test_not_a_model_folder_is_one_line_error(tmp_path):
    with pytest.raises(ArtifactError, match="no config.json"):
        load_hf_text_classifier(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ArtifactError) as error:
        load_hf_text_classifier(tmp_path)
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)
