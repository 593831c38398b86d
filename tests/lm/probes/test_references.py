"""Exposure references controlled for the canary's token count, and the canary's known suffix.

Under a subword tokenizer a secret of few tokens looks exposed to a model that never saw
it (each token costs bits). The references fix that: token-matched by rejection sampling,
else length-corrected. Checked against hand-computed numbers, an independent token count,
and the null distribution of exposure (mean 1/ln 2 ≈ 1.44 bits) under an untrained model.
"""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.lm.probes import (
    References,
    canary_exposure,
    continuation_logprobs,
    draw_references,
    encode_prompts,
    exposure_by_rank,
    length_corrected_scores,
    random_fillings,
)
from distillguard.lm.probes.references import scored_token_counts

pytestmark = pytest.mark.usefixtures("one_thread")

PREFIX, SUFFIX = "my PIN is ", "\n"


@pytest.fixture(scope="module")
def untrained(small_tokenizer):
    from distillguard.lm.models import build_causal_lm

    tiny = {"kind": "gpt2", "n_layer": 1, "n_embd": 64, "n_head": 2, "n_positions": 64}  # as tests/lm/conftest.py
    return build_causal_lm(tiny, tokenizer=small_tokenizer, seed=0).eval()


def secrets_by_token_count(tokenizer, n: int = 400) -> dict[int, list[str]]:
    candidates, _ = random_fillings(alphabet="0123456789", length=6, n=n, seed=123)
    counts = scored_token_counts(tokenizer, PREFIX, [s + SUFFIX for s in candidates])
    groups: dict[int, list[str]] = {}
    for s, k in zip(candidates, counts, strict=True):
        groups.setdefault(int(k), []).append(s)
    return groups


def test_length_correction_hand_computed():
    # two references of 4 tokens and two of 5, at 10 bits per token; the secret takes 3
    corrected = length_corrected_scores(np.array([40.0, 41.0, 50.0, 51.0]), np.array([4, 4, 5, 5]), secret_tokens=3)
    np.testing.assert_allclose(corrected, [30.0, 31.0, 30.0, 31.0])
    assert exposure_by_rank(30.5, corrected) == pytest.approx(np.log2(5) - np.log2(3))  # mid-rank, not rank 1
    same = length_corrected_scores(np.array([3.0, 1.0]), np.array([4, 4]), secret_tokens=2)
    np.testing.assert_array_equal(same, [3.0, 1.0])  # one token count: nothing to correct


def test_matched_references_take_the_secret_token_count(untrained, small_tokenizer):
    groups = secrets_by_token_count(small_tokenizer)
    common = max(groups, key=lambda k: len(groups[k]))
    secret = groups[common][0]
    refs = draw_references(small_tokenizer, prefix=PREFIX, secret=secret, suffix=SUFFIX, alphabet="0123456789",
                           n=300, seed=1)
    assert refs.length_control == "matched" and len(refs.fillings) == 300 and refs.secret_tokens == common
    # the tokens the model is actually scored on, secret and every reference alike
    scored = continuation_logprobs(untrained, small_tokenizer, prefix=PREFIX,
                                   candidates=[secret + SUFFIX, *(f + SUFFIX for f in refs.fillings)]).n_tokens()
    assert set(scored.tolist()) == {common}
    joint = encode_prompts(small_tokenizer, [PREFIX + f + SUFFIX for f in refs.fillings])
    assert len({len(ids) for ids in joint}) > 1  # some join the prefix's space: raw lengths alone would mislead
    assert secret not in refs.fillings and all(len(f) == 6 and f.isdigit() for f in refs.fillings)
    assert len(set(refs.fillings)) > 290  # uniform draws over a large class, not a few repeated
    again = draw_references(small_tokenizer, prefix=PREFIX, secret=secret, suffix=SUFFIX, alphabet="0123456789",
                            n=300, seed=1)
    assert again.fillings == refs.fillings  # seeded


def test_rare_token_count_falls_back_to_a_length_corrected_rank(small_tokenizer):
    groups = secrets_by_token_count(small_tokenizer)
    rare = min(groups, key=lambda k: len(groups[k]))
    assert len(groups[rare]) / sum(map(len, groups.values())) < 0.05
    refs = draw_references(small_tokenizer, prefix=PREFIX, secret=groups[rare][0], suffix=SUFFIX,
                           alphabet="0123456789", n=200, seed=1)
    assert refs.length_control == "corrected" and len(refs.fillings) == len(refs.token_counts) == 200
    assert len(set(refs.token_counts.tolist())) > 1 and refs.secret_tokens == rare


def test_small_space_is_enumerated(small_tokenizer):
    refs = draw_references(small_tokenizer, prefix=PREFIX, secret="123", suffix=SUFFIX, alphabet="0123456789",
                           n=2000, seed=0)
    assert refs.exhaustive and "123" not in refs.fillings
    if refs.length_control == "matched":
        assert set(refs.token_counts.tolist()) == {refs.secret_tokens} and len(refs.fillings) < 999
    else:
        assert len(refs.fillings) == 999


def test_length_control_brings_an_unseen_short_secret_back_to_the_null(untrained, small_tokenizer):
    """Secrets of the fewest tokens, under a model that saw none: unmatched references give
    them several bits; controlled ones give the null mean of about 1/ln 2 = 1.44 bits."""
    groups = secrets_by_token_count(small_tokenizer, n=2000)
    fewest = min(groups)
    secrets = groups[fewest][:16]
    assert len(secrets) >= 8
    controlled, unmatched = [], []
    for i, secret in enumerate(secrets):
        refs = draw_references(small_tokenizer, prefix=PREFIX, secret=secret, suffix=SUFFIX, alphabet="0123456789",
                               n=100, seed=i)
        controlled.append(canary_exposure(untrained, small_tokenizer, prefix=PREFIX, secret=secret, suffix=SUFFIX,
                                          references=refs).exposure_bits)
        plain, _ = random_fillings(alphabet="0123456789", length=6, n=100, exclude=secret, seed=i)
        counts = scored_token_counts(small_tokenizer, PREFIX, [f + SUFFIX for f in plain])
        raw = References(plain, counts, refs.secret_tokens, False, "none")
        unmatched.append(canary_exposure(untrained, small_tokenizer, prefix=PREFIX, secret=secret, suffix=SUFFIX,
                                         references=raw).exposure_bits)
    assert np.mean(unmatched) > 3.0, unmatched  # the token-count bias
    assert 0.6 < np.mean(controlled) < 2.4, controlled


def test_the_suffix_is_scored_with_the_secret_and_every_reference(untrained, small_tokenizer):
    secret = "408496"
    refs = draw_references(small_tokenizer, prefix=PREFIX, secret=secret, suffix=". Thanks", alphabet="0123456789",
                           n=50, seed=0)
    result = canary_exposure(untrained, small_tokenizer, prefix=PREFIX, secret=secret, suffix=". Thanks",
                             references=refs)
    assert result.suffix_scored and result.length_control == refs.length_control
    bits = continuation_logprobs(untrained, small_tokenizer, prefix=PREFIX,
                                 candidates=[secret + ". Thanks", *(f + ". Thanks" for f in refs.fillings)]
                                 ).log_perplexity_bits()
    refs_bits = bits[1:] if refs.length_control == "matched" else length_corrected_scores(
        bits[1:], refs.token_counts, secret_tokens=refs.secret_tokens)
    assert result.exposure_bits == pytest.approx(exposure_by_rank(bits[0], refs_bits))
    bare = continuation_logprobs(untrained, small_tokenizer, prefix=PREFIX, candidates=[secret])
    assert bits[0] > bare.log_perplexity_bits()[0] + 5  # the suffix's tokens were scored too
