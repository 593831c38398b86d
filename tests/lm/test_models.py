"""Tiny causal LM builders, Hugging Face folder round trips, tokenizer/vocabulary checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from distillguard.errors import ArtifactError, ConfigError
from distillguard.lm.models import (
    build_causal_lm,
    check_same_tokenizer,
    check_vocab_size,
    load_causal_lm,
    resolve_model_config,
    save_causal_lm,
)
from distillguard.lm.tokenizer import train_bpe_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_build_is_seeded_and_sized_by_the_tokenizer(kind: str, small_tokenizer) -> None:
    state = torch.random.get_rng_state()
    model = build_causal_lm({**TINY, "kind": kind}, tokenizer=small_tokenizer, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's generator is untouched
    assert model.get_output_embeddings().weight.shape == (len(small_tokenizer), 32)
    assert model.config.eos_token_id == small_tokenizer.eos_token_id
    assert _same_weights(model, build_causal_lm({**TINY, "kind": kind}, tokenizer=small_tokenizer, seed=3))
    assert not _same_weights(model, build_causal_lm({**TINY, "kind": kind}, tokenizer=small_tokenizer, seed=4))


def test_bad_model_config_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_model_config({"kind": "bert", "n_layer": 0, "n_embed": 64, "dropout": 1.5})
    message = str(info.value)
    assert "unknown key(s) ['n_embed']" in message and "'kind' must be one of ['gpt2', 'llama'], got 'bert'" in message
    assert "'n_layer' must be a positive integer, got 0" in message and "'dropout' must be in [0, 1)" in message
    with pytest.raises(ConfigError, match=r"'n_embd' \(65\) must be a multiple of 'n_head' \(2\)"):
        resolve_model_config({"n_embd": 65, "n_head": 2})


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_saved_folder_loads_with_plain_from_pretrained(tmp_path: Path, kind: str, small_tokenizer) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = build_causal_lm({**TINY, "kind": kind}, tokenizer=small_tokenizer, seed=0).eval()
    save_causal_lm(model, small_tokenizer, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file() and not list((tmp_path / "m").glob("*.bin"))
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "m"))
    ids = torch.tensor([tokenizer("The access code is", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert tokenizer.model_max_length == 64
    again, again_tokenizer = load_causal_lm(tmp_path / "m")
    assert _same_weights(again, model) and again_tokenizer.get_vocab() == small_tokenizer.get_vocab()


def test_load_refuses_incomplete_folders(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no config.json"):
        load_causal_lm(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ArtifactError, match="no weights"):
        load_causal_lm(tmp_path)


def test_check_same_tokenizer_names_both_sizes_and_the_fix(small_corpus, small_tokenizer) -> None:
    check_same_tokenizer(small_tokenizer, small_tokenizer)
    smaller = train_bpe_tokenizer(small_corpus.transfer, vocab_size=400)
    with pytest.raises(ConfigError, match=r"teacher's vocabulary has 512 tokens but the student's has 400; "
                                          r"the student must use the teacher's tokenizer"):
        check_same_tokenizer(small_tokenizer, smaller)
    other_text = train_bpe_tokenizer(small_corpus.members, vocab_size=512)  # same size, other merges
    with pytest.raises(ConfigError, match=r"both have 512 tokens but \d+ of them map to different ids"):
        check_same_tokenizer(small_tokenizer, other_text)


def test_check_vocab_size(small_tokenizer) -> None:
    model = build_causal_lm(TINY, tokenizer=small_tokenizer, seed=0)
    check_vocab_size(model, 512, what="the soft labels")
    with pytest.raises(ConfigError, match="outputs 512 token scores but the soft labels has a vocabulary of 2048"):
        check_vocab_size(model, 2048, what="the soft labels")
