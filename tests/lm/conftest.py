"""Shared fixtures of the LM tests: a small built-in corpus, a tokenizer, a tiny trained teacher.

Models are tiny (1 layer, d=64, vocab 512, blocks of 64 tokens) so the whole folder runs in
well under a minute on 2 cores. Torch runs single-threaded here: at these sizes a second
thread only adds OpenMP synchronisation, which costs up to 5× on a loaded machine.
Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")`` (the fixture is in
tests/conftest.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in these tests may reach a hub

import pytest

TINY_LM = {"kind": "gpt2", "n_layer": 1, "n_embd": 64, "n_head": 2, "n_positions": 64}
BLOCK_LEN = 64


@pytest.fixture(scope="session")
def small_corpus_args() -> dict:
    """Arguments of :func:`small_corpus` (the default 10 people x (4, 8, 16) mentions outgrow 12 kB)."""
    return {"target_bytes": 12_000, "canaries_per_count": 1, "nonmember_bytes": 6_000, "test_bytes": 3_000,
            "transfer_bytes": 30_000, "pii_mentions": (4, 8), "pii_people_per_count": 1}


@pytest.fixture(scope="session")
def small_corpus(small_corpus_args):
    """One canary at each of 1, 4 and 16 repetitions, one person mentioned 4 and one 8 times;
    ~12 kB of members, ~30 kB of transfer."""
    from distillguard.lm.pii_corpus import generate_pii_corpus

    return generate_pii_corpus(seed=0, **small_corpus_args)


@pytest.fixture(scope="session")
def default_corpus():
    """The built-in corpus at its default size (~300 kB of members)."""
    from distillguard.lm.pii_corpus import generate_pii_corpus

    return generate_pii_corpus(seed=0)


@pytest.fixture(scope="session")
def small_tokenizer(small_corpus):
    from distillguard.lm.tokenizer import train_bpe_tokenizer

    return train_bpe_tokenizer(small_corpus.transfer, vocab_size=512)


@pytest.fixture(scope="session")
def trained_teacher(small_corpus, small_tokenizer):
    """A 1-layer GPT-2 fitted on the small members text (8 epochs: enough to memorize 16×)."""
    from distillguard.lm.blocks import encode_blocks
    from distillguard.lm.models import build_causal_lm
    from distillguard.lm.train import train_causal_lm
    from conftest import single_thread

    blocks = encode_blocks(small_tokenizer, small_corpus.members, block_len=BLOCK_LEN)
    model = build_causal_lm(TINY_LM, tokenizer=small_tokenizer, seed=0)
    with single_thread():
        log = train_causal_lm(model, blocks, epochs=8, lr=3e-3, batch_size=16, seed=0)
    return model, log
