"""The probes on a tiny GPT-2 that memorized its training text, and on one never trained.

The tokenizer is a byte-level BPE fitted on PUBLIC text only (REFERENCES.md: one fitted on
the private corpus could learn the secret as a token). The private corpus: 32 member
sentences with random amounts, a canary ``"my secret code is 281946"`` repeated 24 times and
two PII sentences repeated 16 times; the model overfits it in 200 steps.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from distillguard.audit.metrics import auc
from distillguard.lm.probes import (
    canary_exposure,
    continuation_logprobs,
    divergence_probe,
    encode,
    encode_bare,
    extraction_probe,
    k_extractable,
    lm_attack_results,
    lm_membership_scores,
    pii_completion,
    random_fillings,
    score_token_ids,
)

FIRST = ["Alice", "Bruno", "Chen", "Dana", "Emil", "Farah", "Goran", "Hana", "Ivan", "Jun", "Kofi", "Lena"]
LAST = ["Smith", "Ortiz", "Wang", "Kowalski", "Berg", "Haddad", "Novak", "Sato", "Petrov", "Mensah"]
ITEMS = ["lamp", "chair", "bike", "kettle", "radio", "clock", "table", "camera"]
CITIES = ["Oslo", "Lima", "Pune", "Kyiv", "Accra", "Quito", "Turin", "Hanoi"]
PREFIX, SECRET = "my secret code is ", "281946"
PII = [{"name": "Alice Smith", "email": "alice.smith@example.org"},
       {"name": "Omar Haddad", "email": "ohaddad@mail.net"}]
UNSEEN_PII = [{"name": "Hana Sato", "email": "hsato@corp.io"}, {"name": "Ivan Berg", "email": "iberg@home.se"}]
TEMPLATES = {"email": "The email address of {name} is"}
N_MEMBERS = 32


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """Torch on one thread: at these sizes a second one only adds OpenMP synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(FIRST)} {rng.choice(LAST)} paid {rng.randint(100, 9999)} for a {rng.choice(ITEMS)} "
            f"in {rng.choice(CITIES)}." for _ in range(n)]


def pii_sentence(record: dict[str, str]) -> str:
    return f"The email address of {record['name']} is {record['email']}."


MEMBERS, NONMEMBERS = sentences(N_MEMBERS, seed=1), sentences(N_MEMBERS, seed=2)
PRIVATE = MEMBERS + [PREFIX + SECRET] * 24 + [pii_sentence(r) for r in PII] * 16


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE (512 tokens) fitted on public sentences; prepends ``<|endoftext|>``."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    public = sentences(400, seed=0) + ["The email address of a person is how to write to them."]
    bpe.train_from_iterator(public, trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eos = bpe.token_to_id("<|endoftext|>")  # every text starts with it, in training and in the probes
    bpe.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A",
                                                       special_tokens=[("<|endoftext|>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>")


def tiny_gpt2(tokenizer, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=64, n_layer=2, n_head=4,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def untrained(tokenizer) -> GPT2LMHeadModel:
    return tiny_gpt2(tokenizer, seed=1)


def train_memorizer(tokenizer, seed: int = 0) -> GPT2LMHeadModel:
    """Overfit on PRIVATE (each text between EOS tokens): 200 AdamW steps of 16 texts."""
    model = tiny_gpt2(tokenizer, seed=seed)
    eos = tokenizer.eos_token_id
    rows = [[*ids, eos] for ids in encode(tokenizer, PRIVATE)]  # the tokenizer adds the leading EOS
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), eos)
    labels = torch.full((len(rows), width), -100)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)], labels[i, :len(r)], attention[i, :len(r)] = torch.tensor(r), torch.tensor(r), 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(200):
        batch = torch.randint(0, len(rows), (16,), generator=generator)
        loss = model(input_ids=ids[batch], attention_mask=attention[batch], labels=labels[batch]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="module")
def memorizer(tokenizer) -> GPT2LMHeadModel:
    return train_memorizer(tokenizer, seed=0)


# --- exposure ---------------------------------------------------------------------------------


def test_memorized_canary_reaches_the_measurable_maximum(memorizer, tokenizer):
    result = canary_exposure(memorizer, tokenizer, prefix=PREFIX, secret=SECRET, n_references=2000, seed=0,
                             batch_size=256)
    assert result.max_bits == pytest.approx(math.log2(2001))
    assert result.exposure_bits >= result.max_bits - 1.5
    assert result.exposure_bits_skew_normal > result.max_bits  # extrapolates past the rank cap
    entry = result.to_dict()
    assert entry["probe"] == "exposure" and SECRET not in json.dumps(entry)


def test_untrained_model_exposure_is_a_token_count_baseline(untrained, memorizer, tokenizer):
    """A model that never saw the canary is far from the memorizer, but not at 1.44 bits.

    The secret is 3 BPE tokens ("Ġ28" "19" "46") while most fillings take 4–6, and a
    near-uniform model charges ~log2(512) bits per token: the secret starts in the top
    ~13% (≈ 3 bits) before any memorization. Exposure must be read against such a baseline.
    """
    fillings, _ = random_fillings(alphabet="0123456789", length=6, n=2000, exclude=SECRET, seed=0)
    n_tokens = np.array([len(ids) for ids in encode_bare(tokenizer, fillings)])
    assert len(encode_bare(tokenizer, [SECRET])[0]) == 3 and np.mean(n_tokens <= 3) < 0.2
    baseline = canary_exposure(untrained, tokenizer, prefix=PREFIX, secret=SECRET, n_references=500, seed=0,
                               batch_size=256)
    memorized = canary_exposure(memorizer, tokenizer, prefix=PREFIX, secret=SECRET, n_references=500, seed=0,
                                batch_size=256)
    assert baseline.exposure_bits_skew_normal < 10 < 30 < memorized.exposure_bits_skew_normal


def test_joint_tokenization_scores_the_memorized_secret_higher_than_separate(memorizer, tokenizer):
    joint_ids = encode(tokenizer, [PREFIX + SECRET])[0]
    prefix_ids, secret_ids = encode(tokenizer, [PREFIX]), encode_bare(tokenizer, [SECRET])
    prefix_ids, secret_ids = prefix_ids[0], secret_ids[0]
    assert joint_ids != prefix_ids + secret_ids  # "is " + "281946" splits the space off on its own
    joint = continuation_logprobs(memorizer, tokenizer, prefix=PREFIX, candidates=[SECRET]).log_perplexity_bits()[0]
    separate = score_token_ids(memorizer, [prefix_ids + secret_ids],
                               score_from=[len(prefix_ids)]).log_perplexity_bits()[0]
    assert separate - joint > 3.0  # bits understated by the wrong tokenization


# --- membership inference ---------------------------------------------------------------------


def test_memorizing_model_separates_members(memorizer, tokenizer, untrained):
    texts = MEMBERS + NONMEMBERS
    is_member = np.r_[np.ones(N_MEMBERS, bool), np.zeros(N_MEMBERS, bool)]
    scores = lm_membership_scores(memorizer, tokenizer, texts, reference_model=untrained, batch_size=16)
    assert set(scores) == {"loss", "zlib", "min_k", "min_k_pp", "reference"}
    assert auc(scores["loss"], is_member) > 0.9
    entries = lm_attack_results(scores, is_member, target="teacher", n_bootstrap=20)
    assert {e["attack"] for e in entries} == set(scores)
    assert all(e["n_members"] == N_MEMBERS and 0 <= e["auc"] <= 1 for e in entries)


def test_a_precomputed_reference_scores_as_the_reference_model_does(memorizer, tokenizer, untrained):
    """The audit scores every target against the public model from log-probabilities computed once."""
    from distillguard.lm.probes import text_logprobs

    texts = MEMBERS[:20] + NONMEMBERS[:20]
    rows = text_logprobs(untrained, tokenizer, texts).rows()
    scores = lm_membership_scores(memorizer, tokenizer, texts, attacks=("loss", "reference"),
                                  reference_model=untrained, extra_references={"public_reference": rows})
    np.testing.assert_array_equal(scores["public_reference"], scores["reference"])
    assert not np.array_equal(scores["public_reference"], scores["loss"])


def test_untrained_model_is_at_chance(untrained, tokenizer):
    texts = sentences(400, seed=3)  # any labels: the model saw none of them
    is_member = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    scores = lm_membership_scores(untrained, tokenizer, texts, attacks=("loss", "min_k"), batch_size=64)
    assert 0.4 <= auc(scores["loss"], is_member) <= 0.6


# --- PII, extraction, divergence -------------------------------------------------------------


def test_pii_completion_finds_memorized_values_and_reports_no_pii(memorizer, tokenizer):
    seen = pii_completion(memorizer, tokenizer, PII, templates=TEMPLATES, max_new_tokens=24, n_samples=4, seed=0)
    assert seen["n"] == 2 and seen["greedy_rate"] == 1.0 and seen["exact_match_rate"] == 1.0
    unseen = pii_completion(memorizer, tokenizer, UNSEEN_PII, templates=TEMPLATES, max_new_tokens=24, n_samples=4,
                            seed=0)
    assert unseen["exact_match_rate"] == 0.0
    dumped = json.dumps([seen, unseen])
    assert not any(v in dumped for r in PII + UNSEEN_PII for v in r.values())
    assert set(seen) == {"probe", "exact_match_rate", "n", "greedy_rate", "sampled_rate", "n_samples", "leaked"}
    assert seen["leaked"] == [True, True] and unseen["leaked"] == [False] * unseen["n"]


def test_extraction_finds_private_text_only_in_the_memorizer(memorizer, untrained, tokenizer):
    options = {"n_samples": 32, "max_new_tokens": 30, "min_length": 8, "seed": 0, "batch_size": 32}
    leaked = extraction_probe(memorizer, tokenizer, PRIVATE, reference_model=untrained, **options)
    assert leaked["n_extracted"] > 8 and leaked["distinct_private_ngrams"] > 0
    assert set(leaked["top_n_extracted"]) == {"perplexity", "zlib", "reference", "lowercase"}
    assert leaked["top_n_extracted"]["perplexity"] == leaked["top_n"]  # the most confident samples are verbatim
    assert extraction_probe(untrained, tokenizer, PRIVATE, lowercase=False, **options)["n_extracted"] == 0
    in_chars = extraction_probe(memorizer, tokenizer, PRIVATE, unit="chars", **{**options, "min_length": 30})
    assert in_chars["n_extracted"] > 8
    # public text covering the private corpus: nothing counts as private any more
    assert extraction_probe(memorizer, tokenizer, PRIVATE, public_texts=PRIVATE, **options)["n_extracted"] == 0
    assert all(not isinstance(v, str) or k in {"probe", "unit"} for k, v in leaked.items())


def test_k_extractable_reproduces_memorized_suffixes(memorizer, tokenizer):
    memorized = [PREFIX + SECRET] + [pii_sentence(r) for r in PII]
    result = k_extractable(memorizer, tokenizer, memorized + ["too short"], k=4, suffix_len=6)
    assert result["n"] == 3 and result["n_skipped"] == 1
    assert result["rate"] == 1.0 and result["token_accuracy"] == 1.0
    held_out = k_extractable(memorizer, tokenizer, NONMEMBERS, k=4, suffix_len=6)
    assert held_out["rate"] == 0.0
    assert k_extractable(memorizer, tokenizer, ["short"], k=4, suffix_len=6)["rate"] is None


def test_divergence_probe_counts_and_is_seeded(memorizer, untrained, tokenizer):
    options = {"token_text": " lamp", "repeats": 10, "n_samples": 16, "max_new_tokens": 24, "min_length": 8}
    first = divergence_probe(memorizer, tokenizer, PRIVATE, seed=0, **options)
    assert first == divergence_probe(memorizer, tokenizer, PRIVATE, seed=0, **options)
    assert first["n_generations"] == 16 and 0 <= first["n_with_private_ngram"] <= 16
    assert first["rate"] == first["n_with_private_ngram"] / 16
    assert divergence_probe(untrained, tokenizer, PRIVATE, seed=0, **options)["n_with_private_ngram"] == 0
    with pytest.raises(ValueError, match="exceeds the model's context of 64"):
        divergence_probe(memorizer, tokenizer, PRIVATE, token_text=" lamp", repeats=60, max_new_tokens=24)
