"""Token scoring and generation: batching, padding masks, joint tokenization, seeds.

A tiny randomly initialised GPT-2 and a character-level tokenizer callable (not a
Hugging Face class: any callable returning ``input_ids`` must work).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from distillguard.lm.probes.generation import generate_continuations, greedy_decode
from distillguard.lm.probes.mia import distribution_moments
from distillguard.lm.probes.scoring import (
    common_prefix_length,
    continuation_logprobs,
    encode_bare,
    encode_prompts,
    score_token_ids,
    special_affixes,
    text_logprobs,
)

ALPHABET = "abcdefghijklmnopqrstuvwxyz .0123456789"


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """Torch on one thread: at these sizes a second one only adds OpenMP synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CharTokenizer:
    """One token per character; id 0 is EOS (not added by ``__call__``)."""

    eos_token_id = 0
    pad_token_id = None
    bos_token_id = None

    def __init__(self) -> None:
        self.vocab = {c: i + 1 for i, c in enumerate(ALPHABET)}
        self.inverse = {i: c for c, i in self.vocab.items()}

    def __call__(self, texts: list[str]) -> dict[str, list[list[int]]]:
        return {"input_ids": [[self.vocab[c] for c in t] for t in texts]}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(self.inverse.get(int(i), "") for i in ids)


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    return CharTokenizer()


@pytest.fixture(scope="module")
def model() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(ALPHABET) + 1, n_positions=32, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=0, eos_token_id=0, resid_pdrop=0.3, embd_pdrop=0.3, attn_pdrop=0.3)
    return GPT2LMHeadModel(config)


def _manual_logprobs(model, ids: list[int]) -> np.ndarray:
    """``(T, V)`` log-softmax of the model's logits for one unpadded sequence."""
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.double(), dim=-1).numpy()


SEQUENCES = [[1, 2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12, 13], [3, 3, 3, 3, 3, 3, 3, 3, 3, 3], [5, 4, 3]]


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_scores_equal_unbatched_log_softmax_whatever_the_batch(model, batch_size):
    scored = score_token_ids(model, SEQUENCES, batch_size=batch_size, moments=True)
    assert scored.logprobs.shape == (5, 10) and scored.mask.shape == (5, 10)
    for i, ids in enumerate(SEQUENCES):
        full = _manual_logprobs(model, ids)[:-1]  # (T-1, V): predictions of tokens 1..T-1
        expected = full[np.arange(len(ids) - 1), ids[1:]]
        np.testing.assert_array_equal(scored.mask[i], [False] + [True] * (len(ids) - 1) + [False] * (10 - len(ids)))
        np.testing.assert_allclose(scored.rows()[i], expected, atol=1e-5)
        mu, sigma = distribution_moments(full)
        np.testing.assert_allclose(scored.moment_rows()[0][i], mu, atol=1e-5)
        np.testing.assert_allclose(scored.moment_rows()[1][i], sigma, atol=1e-5)
    np.testing.assert_allclose(scored.log_perplexity_bits(), -scored.total_logprob() / np.log(2))
    np.testing.assert_allclose(scored.mean_logprob(), [r.mean() for r in scored.rows()])


def test_scoring_is_in_eval_mode_and_restores_training(model):
    model.train()  # dropout 0.3 would make scores random
    first = score_token_ids(model, SEQUENCES).logprobs
    assert model.training
    np.testing.assert_array_equal(first, score_token_ids(model, SEQUENCES).logprobs)
    model.eval()


def test_score_from_masks_the_context(model):
    scored = score_token_ids(model, SEQUENCES[:2], score_from=[4, 1])
    np.testing.assert_array_equal(scored.n_tokens(), [3, 1])
    assert scored.logprobs[0, :4].tolist() == [0.0] * 4  # context tokens are zeroed


def test_continuation_scores_exactly_the_candidate_tokens(model, tokenizer):
    prefix, candidates = "my code is ", ["281946", "12", "x"]
    scored = continuation_logprobs(model, tokenizer, prefix=prefix, candidates=candidates, batch_size=2)
    np.testing.assert_array_equal(scored.n_tokens(), [6, 2, 1])
    for i, candidate in enumerate(candidates):
        ids = tokenizer([prefix + candidate])["input_ids"][0]
        full = _manual_logprobs(model, ids)
        expected = full[np.arange(len(prefix) - 1, len(ids) - 1), ids[len(prefix):]]
        np.testing.assert_allclose(scored.rows()[i], expected, atol=1e-5)
    per_candidate = continuation_logprobs(model, tokenizer, prefix=[prefix, "a ", prefix], candidates=candidates)
    np.testing.assert_array_equal(per_candidate.n_tokens(), [6, 2, 1])
    np.testing.assert_allclose(per_candidate.rows()[0], scored.rows()[0], atol=1e-6)


class FramingTokenizer(CharTokenizer):
    """Wraps every text in id 0 (BOS = EOS), as a post-processor template would."""

    def __call__(self, texts: list[str]) -> dict[str, list[list[int]]]:
        return {"input_ids": [[0, *ids, 0] for ids in super().__call__(texts)["input_ids"]]}


def test_tokens_the_tokenizer_adds_are_context_never_candidate(model):
    framing = FramingTokenizer()
    assert special_affixes(framing) == ([0], [0])
    assert encode_bare(framing, ["ab"]) == [[1, 2]]
    assert encode_prompts(framing, ["ab"]) == [[0, 1, 2]]
    scored = continuation_logprobs(model, framing, prefix="my code is ", candidates=["281946"])
    assert scored.n_tokens().tolist() == [6]  # the leading 0 is context; the trailing 0 is not scored
    plain = continuation_logprobs(model, CharTokenizer(), prefix="my code is ", candidates=["281946"])
    assert plain.n_tokens().tolist() == [6]


def test_common_prefix_length():
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0


def test_bad_inputs_name_the_problem(model, tokenizer):
    with pytest.raises(ValueError, match="sequence 1 has 1 token"):
        score_token_ids(model, [[1, 2], [3]])
    with pytest.raises(ValueError, match=r"score_from\[0\] = 2 must be in \[1, 1\]"):
        score_token_ids(model, [[1, 2]], score_from=[2])
    with pytest.raises(ValueError, match="33 tokens but the model's context is 32"):
        score_token_ids(model, [list(range(1, 34))])
    with pytest.raises(ValueError, match="candidate 0 adds no token"):
        continuation_logprobs(model, tokenizer, prefix="abc", candidates=[""])
    with pytest.raises(ValueError, match="2 prefixes for 1 candidates"):
        continuation_logprobs(model, tokenizer, prefix=["a", "b"], candidates=["c"])
    with pytest.raises(TypeError, match="not one string"):
        text_logprobs(model, tokenizer, "a text")
    truncated = text_logprobs(model, tokenizer, ["abcdefghij" * 4], max_length=8)
    assert truncated.n_tokens().tolist() == [7]


def test_greedy_decode_equals_a_plain_argmax_loop(model):
    prompts = [[1, 2, 3], [4, 5, 6], [7, 7, 7]]
    out = greedy_decode(model, prompts, steps=6, batch_size=2)
    for prompt, row in zip(prompts, out, strict=True):
        ids = list(prompt)
        for _ in range(6):
            ids.append(int(np.argmax(_manual_logprobs(model, ids)[-1])))
        assert row.tolist() == ids[3:]
    with pytest.raises(ValueError, match="one common length"):
        greedy_decode(model, [[1, 2], [3]], steps=2)


def test_left_padded_generation_matches_one_prompt_at_a_time(model):
    prompts = [[1, 2, 3, 4, 5], [6], [7, 8, 9]]
    options = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    batched = generate_continuations(model, prompts, batch_size=3, **options)
    single = generate_continuations(model, prompts, batch_size=1, **options)
    assert batched == single
    assert [len(g[0]) for g in batched] == [5, 5, 5]
    greedy_rows = greedy_decode(model, [prompts[0]], steps=5)
    assert batched[0][0] == greedy_rows[0].tolist()


def test_sampling_is_seeded_and_leaves_the_global_rng_alone(model):
    options = {"max_new_tokens": 8, "do_sample": True, "num_return_sequences": 3, "pad_token_id": 0}
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    first = generate_continuations(model, [[1, 2], [3, 4]], seed=7, **options)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first == generate_continuations(model, [[1, 2], [3, 4]], seed=7, **options)
    assert first != generate_continuations(model, [[1, 2], [3, 4]], seed=8, **options)
    assert len(first) == 2 and all(len(group) == 3 for group in first)
