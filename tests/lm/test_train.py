"""Teacher fine-tuning memorizes a repeated canary; distillation moves the student to the teacher."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from distillguard.errors import ConfigError
from distillguard.lm.blocks import encode_blocks, iter_token_blocks
from distillguard.lm.models import build_causal_lm
from distillguard.lm.softlabel_reader import SoftLabelReader
from distillguard.lm.softlabels import write_soft_labels
from distillguard.lm.train import (
    distill_causal_lm,
    evaluate_lm_loss,
    evaluate_sparse_kd,
    next_token_loss,
    train_causal_lm,
)

pytestmark = pytest.mark.usefixtures("one_thread")

STUDENT = {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}


def _secret_nll(model, tokenizer, prefix: str, secret: str) -> float:
    """−log p(secret | prefix), prefix and secret tokenized jointly (as exposure does)."""
    n_prefix = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    ids = torch.tensor([tokenizer(prefix + secret, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        per_token = next_token_loss(model, ids, torch.ones_like(ids, dtype=torch.bool), reduction="none")[0]
    return float(per_token[n_prefix - 1:].sum())


def test_teacher_memorizes_a_16x_canary(trained_teacher, small_corpus, small_tokenizer) -> None:
    teacher, log = trained_teacher
    assert log[-1]["loss"] < log[0]["loss"] - 1.5
    canary = next(c for c in small_corpus.canaries if c.repetitions == 16)
    rng = random.Random(0)
    fillings = ["".join(rng.choice(canary.alphabet) for _ in canary.secret) for _ in range(20)]
    randoms = [_secret_nll(teacher, small_tokenizer, canary.prefix, filling) for filling in fillings]
    secret = _secret_nll(teacher, small_tokenizer, canary.prefix, canary.secret)
    median = sorted(randoms)[10]
    print(f"secret {secret:.2f} nats; random fillings min {min(randoms):.2f}, median {median:.2f}")
    # Ranked above every random filling and at least e^5 ≈ 150× likelier than a typical one; an
    # untrained model puts the secret among the randoms. (A relative margin such as 0.6 × median
    # sat within 2% of the measured value and flipped between CPUs.)
    assert secret < min(randoms) and median - secret > 5.0


@pytest.fixture(scope="module")
def soft_labels(tmp_path_factory, trained_teacher, small_corpus, small_tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("softlabels")
    teacher, _ = trained_teacher
    write_soft_labels(teacher, iter_token_blocks(small_tokenizer, small_corpus.transfer[:60], block_len=64),
                      folder=folder, k=32, batch_size=16, rows_per_shard=32)
    return folder


@pytest.mark.parametrize(("loss", "temperature"), [("forward_kl", 2.0), ("jsd", 1.0)])
def test_distillation_reduces_the_kl_to_the_teacher(
    soft_labels, small_tokenizer, loss: str, temperature: float
) -> None:
    reader = SoftLabelReader(soft_labels)
    student = build_causal_lm(STUDENT, tokenizer=small_tokenizer, seed=1)
    before = evaluate_sparse_kd(student, reader)  # forward KL at T=1 on the transfer text
    log = distill_causal_lm(student, reader, loss=loss, beta=0.5, temperature=temperature, epochs=4, lr=3e-3,
                            batch_size=8, seed=0)
    after = evaluate_sparse_kd(student, reader)
    assert log[-1]["loss"] < log[0]["loss"]
    assert after < 0.6 * before, (before, after)


def test_training_is_deterministic(small_corpus, small_tokenizer) -> None:
    blocks = encode_blocks(small_tokenizer, small_corpus.members[:20], block_len=32)

    def run(seed: int) -> list[torch.Tensor]:
        model = build_causal_lm({**STUDENT, "dropout": 0.1}, tokenizer=small_tokenizer, seed=0)
        epochs = []
        train_causal_lm(model, blocks, epochs=2, lr=1e-3, batch_size=4, seed=seed, on_epoch=epochs.append)
        assert epochs == [0, 1]
        return list(model.state_dict().values())

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_distillation_is_deterministic(soft_labels, small_tokenizer) -> None:
    reader = SoftLabelReader(soft_labels)

    def run(seed: int) -> list[torch.Tensor]:
        student = build_causal_lm(STUDENT, tokenizer=small_tokenizer, seed=2)
        distill_causal_lm(student, reader, temperature=2.0, epochs=1, lr=1e-3, batch_size=16, seed=seed)
        return list(student.state_dict().values())

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_student_with_another_vocabulary_is_refused(soft_labels, small_corpus) -> None:
    from distillguard.lm.tokenizer import train_bpe_tokenizer

    other = train_bpe_tokenizer(small_corpus.transfer, vocab_size=400)
    student = build_causal_lm(STUDENT, tokenizer=other, seed=0)
    with pytest.raises(ConfigError, match="outputs 400 token scores but the soft labels has a vocabulary of 512"):
        distill_causal_lm(student, SoftLabelReader(soft_labels), epochs=1, lr=1e-3, batch_size=4, seed=0)


def test_blocks_longer_than_the_context_are_refused(small_corpus, small_tokenizer) -> None:
    blocks = encode_blocks(small_tokenizer, small_corpus.members[:10], block_len=128)
    model = build_causal_lm(STUDENT, tokenizer=small_tokenizer, seed=0)
    with pytest.raises(ValueError, match="blocks of 128 tokens exceed the model's context of 64"):
        train_causal_lm(model, blocks, epochs=1, lr=1e-3, batch_size=4, seed=0)


def test_evaluate_lm_loss_matches_the_training_loss(trained_teacher, small_corpus, small_tokenizer) -> None:
    teacher, _ = trained_teacher
    blocks = encode_blocks(small_tokenizer, small_corpus.members, block_len=64)
    held_out = encode_blocks(small_tokenizer, small_corpus.test, block_len=64)
    members_loss = evaluate_lm_loss(teacher, blocks)
    with torch.no_grad():
        full = float(next_token_loss(teacher, blocks.ids, blocks.mask))
    assert members_loss == pytest.approx(full, rel=1e-5)
    assert members_loss < evaluate_lm_loss(teacher, held_out)  # the teacher fits its members better
