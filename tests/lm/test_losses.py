"""Sparse KD losses: tested through their maths, and the re-tempering error measured."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distillguard.lm.losses import (
    LOSSES,
    dense_kd_loss,
    divergence,
    sparse_from_logits,
    sparse_kd_loss,
    student_buckets,
)
from distillguard.train.kd import kd_loss

pytestmark = pytest.mark.usefixtures("one_thread")

V = 1024


def _logits(seed: int, *, std: float = 3.0, shape: tuple[int, ...] = (3, 16, V)) -> tuple[torch.Tensor, torch.Tensor]:
    """LM-like teacher logits (Gaussian, std 3: a few likely tokens, a long tail) and a noisy student."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(shape, generator=g) * std
    return teacher, teacher + torch.randn(shape, generator=g)


def _sparse(student: torch.Tensor, teacher: torch.Tensor, *, k: int, **kwargs) -> torch.Tensor:
    ids, logprobs, leftover = sparse_from_logits(teacher, k=k)
    return sparse_kd_loss(student, ids, logprobs, leftover, **kwargs)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_sparse_equals_dense_when_k_covers_the_vocabulary(loss: str, temperature: float) -> None:
    teacher, student = _logits(0)
    dense = dense_kd_loss(student, teacher, loss=loss, beta=0.3, temperature=temperature)
    sparse = _sparse(student, teacher, k=V, loss=loss, beta=0.3, temperature=temperature)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)


def test_dense_forward_kl_matches_the_classifier_kd_loss() -> None:
    """One definition: per token position, T²·KL with batchmean, as train/kd.py for (B, C)."""
    teacher, student = _logits(1)
    for temperature in (1.0, 3.0):
        expected = kd_loss(student.reshape(-1, V), teacher.reshape(-1, V), temperature=temperature)
        torch.testing.assert_close(dense_kd_loss(student, teacher, temperature=temperature), expected)


@pytest.mark.parametrize("loss", LOSSES)
def test_zero_for_identical_distributions(loss: str) -> None:
    teacher, _ = _logits(2)
    assert dense_kd_loss(teacher, teacher, loss=loss, temperature=2.0).abs() < 1e-6
    # at T=1 the buckets are exact, so the sparse loss is zero too, for any k
    assert _sparse(teacher, teacher, k=16, loss=loss).abs() < 1e-6


def test_jsd_limits_follow_trl() -> None:
    """TRL GKD: β=0 is forward KL, β=1 reverse KL; JSD(β)/β → forward and JSD(β)/(1−β) → reverse."""
    teacher, student = _logits(3)
    forward = dense_kd_loss(student, teacher, loss="forward_kl")
    reverse = dense_kd_loss(student, teacher, loss="reverse_kl")
    torch.testing.assert_close(dense_kd_loss(student, teacher, loss="jsd", beta=0.0), forward)
    torch.testing.assert_close(dense_kd_loss(student, teacher, loss="jsd", beta=1.0), reverse)
    beta = 1e-4
    near_forward = dense_kd_loss(student, teacher, loss="jsd", beta=beta) / beta
    near_reverse = dense_kd_loss(student, teacher, loss="jsd", beta=1 - beta) / beta
    torch.testing.assert_close(near_forward, forward, rtol=2e-3, atol=0)
    torch.testing.assert_close(near_reverse, reverse, rtol=2e-3, atol=0)
    # and JSD(0.5) is the symmetric Jensen-Shannon divergence, bounded by log 2
    t_logp, s_logp = F.log_softmax(teacher, -1), F.log_softmax(student, -1)
    js = divergence(t_logp, s_logp, loss="jsd", beta=0.5)
    torch.testing.assert_close(js, divergence(s_logp, t_logp, loss="jsd", beta=0.5))
    assert (js <= math.log(2) + 1e-6).all() and (js >= 0).all()


def test_batchmean_over_unmasked_positions_and_temperature_squared() -> None:
    teacher, student = _logits(4)
    mask = torch.ones(teacher.shape[:2], dtype=torch.bool)
    mask[0, 10:] = False
    mask[2, 3:] = False
    t = 2.0
    per_position = F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                            reduction="none").sum(-1)
    expected = per_position[mask].mean() * t * t
    torch.testing.assert_close(dense_kd_loss(student, teacher, mask=mask, temperature=t), expected)
    # padded positions can hold anything
    garbage = student.clone()
    garbage[~mask] = 1e4
    torch.testing.assert_close(_sparse(garbage, teacher, k=32, mask=mask), _sparse(student, teacher, k=32, mask=mask))


def test_retempering_error_shrinks_as_k_grows() -> None:
    """Re-tempering a truncated top-k is an approximation: measure it against the dense KL.

    Printed numbers (pytest -s) back the table in losses.py; the one-token variant
    (tail tempered as r^(1/T)) is the alternative we rejected.
    """
    teacher, student = _logits(5)
    for temperature in (2.0, 1.0):
        dense = float(dense_kd_loss(student, teacher, temperature=temperature))
        errors, one_token = [], []
        for k in (8, 32, 128, 512, V):
            errors.append(abs(float(_sparse(student, teacher, k=k, temperature=temperature)) - dense) / dense)
            ids, logprobs, leftover = sparse_from_logits(teacher, k=k)
            if k < V:
                buckets = torch.log_softmax(torch.cat([logprobs, leftover[..., None]], -1) / temperature, -1)
                value = divergence(buckets, student_buckets(student, ids, temperature=temperature), loss="forward_kl")
                one_token.append(abs(float(value.mean()) * temperature**2 - dense) / dense)
        print(f"T={temperature}: relative error k=8,32,128,512,V uniform {[round(e, 3) for e in errors]}, "
              f"one-token {[round(e, 3) for e in one_token]}")
        assert all(a > b for a, b in zip(errors, errors[1:], strict=False)) and errors[-1] < 1e-5
        if temperature == 1.0:
            assert errors == pytest.approx(one_token + [0.0], abs=1e-6)  # both exact at T=1 up to the tail shape
        else:
            assert all(u < o for u, o in zip(errors, one_token, strict=False))


def test_sparse_at_t1_is_a_lower_bound_of_the_dense_kl() -> None:
    """Coarse-graining the tail can only lose information (data processing inequality)."""
    teacher, student = _logits(6)
    dense = dense_kd_loss(student, teacher)
    for k in (1, 8, 64):
        assert _sparse(student, teacher, k=k) <= dense + 1e-6


@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_are_finite_at_the_edges(loss: str) -> None:
    teacher, student = _logits(7, shape=(2, 5, 64))
    for k in (4, 64):
        ids, logprobs, leftover = sparse_from_logits(teacher, k=k)
        if k < 64:
            leftover = leftover.clone()
            leftover[0, 0] = float("-inf")  # a tail that underflowed
        logits = student.clone().requires_grad_(True)
        value = sparse_kd_loss(logits, ids, logprobs.half(), leftover, loss=loss, beta=0.4, temperature=2.0)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    empty = sparse_kd_loss(student, ids, logprobs, leftover, mask=torch.zeros(2, 5, dtype=torch.bool), loss=loss)
    assert float(empty) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"loss": "kl"}, r"'loss' parameter must be one of \['forward_kl', 'reverse_kl', 'jsd'\]. Got 'kl'"),
        ({"beta": 1.5}, r"'beta' parameter must be in \[0, 1\]. Got 1.5"),
        ({"temperature": 0.0}, r"'temperature' parameter must be a finite float > 0. Got 0.0"),
    ],
)
def test_bad_parameters(kwargs: dict, expected: str) -> None:
    teacher, student = _logits(8, shape=(1, 2, 16))
    with pytest.raises(ValueError, match=expected):
        _sparse(student, teacher, k=4, **kwargs)


# --- hard tokens: the transfer text's own token where it is a digit -------------------------


def test_hard_targets_switch_positions_from_the_teacher_to_cross_entropy() -> None:
    teacher, student = _logits(7, shape=(2, 5, V))
    targets = torch.randint(0, V, (2, 5), generator=torch.Generator().manual_seed(1))
    none = torch.full((2, 5), -1)
    mask = torch.ones(2, 5, dtype=torch.bool)
    plain = _sparse(student, teacher, k=16, mask=mask, temperature=2.0)
    assert torch.allclose(_sparse(student, teacher, k=16, mask=mask, temperature=2.0, hard_targets=none), plain)
    everywhere = _sparse(student, teacher, k=16, mask=mask, temperature=2.0, hard_targets=targets)
    ce = F.cross_entropy(student.reshape(-1, V), targets.reshape(-1))  # T = 1, no T² factor
    assert torch.allclose(everywhere, ce, atol=1e-5)
    some = targets.clone()
    some[0] = -1  # first row: teacher labels; second: cross-entropy; mean over the 10 positions
    mixed = _sparse(student, teacher, k=16, mask=mask, temperature=2.0, hard_targets=some)
    first = _sparse(student[:1], teacher[:1], k=16, temperature=2.0)
    second = F.cross_entropy(student[1], targets[1])
    assert torch.allclose(mixed, (first + second) / 2, atol=1e-5)


def test_hard_token_targets_mark_the_positions_before_a_hard_token() -> None:
    from distillguard.lm.losses import hard_token_targets

    hard_vocab = torch.zeros(10, dtype=torch.bool)
    hard_vocab[[7, 8]] = True  # say, the digit tokens
    ids = torch.tensor([[3, 7, 8, 4, 7], [5, 8, 2, 0, 0]])
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    targets, kept = hard_token_targets(ids, mask, hard_vocab)
    # position t predicts token t+1: rows 0 and 1 are followed by 7, 8 (row 0) and 8 (row 1)
    assert targets.tolist() == [[7, 8, -1, 7, -1], [8, -1, -1, -1, -1]]
    # each block's last real token has no next token in the shards: out of the loss
    assert kept.tolist() == [[True, True, True, True, False], [True, True, False, False, False]]


def test_digit_token_mask(small_tokenizer) -> None:
    from distillguard.lm.tokenizer import digit_token_mask, token_strings

    mask = digit_token_mask(small_tokenizer)
    strings = token_strings(small_tokenizer)
    assert mask.shape == (len(small_tokenizer),)
    assert {i for i, s in strings.items() if set(s) & set("0123456789")} == set(torch.nonzero(mask)[:, 0].tolist())
    assert mask[small_tokenizer(" 5", add_special_tokens=False)["input_ids"]].any()
    assert not mask[small_tokenizer(" the", add_special_tokens=False)["input_ids"]].any()
