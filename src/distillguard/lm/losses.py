"""Token-level KD losses for causal LMs from sparse (top-k + leftover) teacher labels.

Pure tensor maths, no I/O. The teacher is stored at T=1 as, per token position, its k
most likely token ids, their log-probabilities and the log of the leftover mass
``log(1 − Σ_topk p)`` (:mod:`distillguard.lm.softlabels`). The temperature is applied here,
at load time, so one labeling serves every T.

**Buckets.** Both distributions are compared on k+1 buckets: the teacher's top-k tokens
and one tail bucket holding everything else. The student's tail bucket is its exact mass
outside the teacher's top-k (a logsumexp over its full logits), so the student is free to
shape its tail; only the total is matched. At T=1 this is the KL between coarse-grained
distributions, a lower bound of the dense KL (data processing); the gap is the tail mass
times the KL inside the tail, so it shrinks as k grows and vanishes at k = V.

**Re-tempering is an approximation.** Tempering needs ``Σ_tail p_j^{1/T}``, which a
truncated distribution does not know. We spread the leftover mass r uniformly over the
V−k tail tokens (the maximum-entropy guess), so the tempered tail weight is
``(V−k)·(r/(V−k))^{1/T}``, i.e. ``log w = ℓ_r/T + (1 − 1/T)·log(V−k)``. For T>1 this
overestimates the true tempered tail (Jensen: ``p^{1/T}`` is concave) and for T<1 it
underestimates it; it is exact at T=1 and at k=V. Treating the leftover as one token
(``r^{1/T}``) is the opposite extreme and much worse. Measured relative error of the sparse
forward KL against the dense tempered KL:

==========================================  =====  =====  =====  =====
setting                                     k=8    k=32   k=128  k=512
==========================================  =====  =====  =====  =====
synthetic V=1024, T=1 (tail shape only)     0.48   0.21   0.06   0.002
synthetic V=1024, T=2, uniform spread       0.68   0.50   0.32   0.07
synthetic V=1024, T=2, tail as one token    6.2    5.2    2.7    0.43
tiny GPT-2 teacher V=2048, T=1              0.37   0.25   0.16
tiny GPT-2 teacher V=2048, T=2              0.91   0.81   0.62
tiny GPT-2 teacher V=2048, T=4              0.98   0.94   0.84
==========================================  =====  =====  =====  =====

(synthetic: ``tests/lm/test_lm_losses.py::test_retempering_error_shrinks_as_k_grows``,
Gaussian teacher logits with std 3, student = teacher + N(0, 1); tiny teacher: 2 layers,
d=64, a few epochs on the built-in members, student = its own earlier checkpoint, on
15,853 transfer tokens.) The error is 0 at k = V and falls with k, but a small,
high-entropy teacher leaves a lot outside its top-k (mean leftover mass 0.54 / 0.41 / 0.28
at k = 8 / 32 / 128 above), so with such teachers prefer T = 1 (where only the tail shape is
lost) or a large k; in all cases the sparse loss is still a proper divergence on the
buckets (zero iff the student matches the teacher's top-k and tail mass).

**Divergences** (per position, over the buckets, then × T² as in Hinton et al. 2015 so
that switching T or the divergence keeps gradient scales comparable):

- forward KL ``KL(p_T ‖ p_S)`` (mass-covering, the classic KD loss);
- reverse KL ``KL(p_S ‖ p_T)`` (mode-seeking; MiniLLM, Gu et al. 2024);
- generalized JSD(β) of GKD (Agarwal et al. 2024, Eq. 1), in TRL's convention
  (``GKDTrainer.generalized_jsd_loss``): ``M = β·p_T + (1−β)·p_S``,
  ``JSD(β) = β·KL(p_T ‖ M) + (1−β)·KL(p_S ‖ M)``, with β=0 *defined* as forward KL and
  β=1 as reverse KL (as β→0, JSD(β)/β → forward KL; as β→1, JSD(β)/(1−β) → reverse KL).
  TRL applies no T²; we do, uniformly.

**Averaging** is ``batchmean`` over token positions: the sum over unmasked positions
divided by their number (never by positions × vocabulary, the ``reduction="mean"`` bug).
"""

from __future__ import annotations

import math

import torch

LOSSES = ("forward_kl", "reverse_kl", "jsd")
LOG_FLOOR = -1.0e4  # log-probabilities below this are treated as exp(·) = 0 but kept finite


def check_loss_params(*, loss: str, beta: float, temperature: float) -> None:
    """Validate the divergence choice, β ∈ [0, 1] and T > 0 (sklearn-style messages)."""
    if loss not in LOSSES:
        raise ValueError(f"The 'loss' parameter must be one of {list(LOSSES)}. Got {loss!r} instead.")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"The 'beta' parameter must be in [0, 1]. Got {beta!r} instead.")
    if not temperature > 0.0 or not math.isfinite(temperature):
        raise ValueError(f"The 'temperature' parameter must be a finite float > 0. Got {temperature!r} instead.")


def tempered_teacher_buckets(
    topk_logprobs: torch.Tensor, leftover: torch.Tensor, *, temperature: float, vocab_size: int
) -> torch.Tensor:
    """The teacher's tempered distribution over the k top tokens and the tail bucket.

    Args:
        topk_logprobs: (..., k) log p at T=1 of the teacher's top-k tokens.
        leftover: (...,) ``log(1 − Σ_topk p)`` at T=1 (−inf allowed, e.g. when k = V).
        temperature: T > 0.
        vocab_size: V, needed to spread the leftover uniformly over V−k tokens.

    Returns:
        (..., k+1) log-probabilities summing to 1 (last = tail); (..., k) when k = V.
    """
    k = topk_logprobs.shape[-1]
    head = topk_logprobs.float().clamp_min(LOG_FLOOR) / temperature  # (..., k)
    if k >= vocab_size:
        return torch.log_softmax(head, dim=-1)
    spread = (1.0 - 1.0 / temperature) * math.log(vocab_size - k)
    tail = leftover.float().clamp_min(LOG_FLOOR) / temperature + spread  # (...,)
    return torch.log_softmax(torch.cat([head, tail.unsqueeze(-1)], dim=-1), dim=-1)


def student_buckets(student_logits: torch.Tensor, topk_ids: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """The student's tempered log-probabilities on the teacher's top-k ids plus its exact tail.

    Args:
        student_logits: (..., V) raw student outputs.
        topk_ids: (..., k) the teacher's top-k token ids at each position.

    Returns:
        (..., k+1) log-probabilities (last = mass outside the top-k); (..., k) when k = V.
    """
    logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)  # (..., V)
    head = logp.gather(-1, topk_ids.long())  # (..., k)
    if topk_ids.shape[-1] >= student_logits.shape[-1]:
        return head
    tail = logp.scatter(-1, topk_ids.long(), float("-inf")).logsumexp(dim=-1)  # (...,)
    return torch.cat([head, tail.unsqueeze(-1)], dim=-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """(...,) KL(p ‖ q) over the last axis, with 0·log 0 = 0."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(dim=-1)


def divergence(teacher_logp: torch.Tensor, student_logp: torch.Tensor, *, loss: str, beta: float = 0.5) -> torch.Tensor:
    """Per-position divergence between two distributions on the same support.

    Args:
        teacher_logp, student_logp: (..., S) log-probabilities (S = V dense, k+1 sparse).
        loss: ``"forward_kl"``, ``"reverse_kl"`` or ``"jsd"`` (see the module docstring).
        beta: JSD interpolation in [0, 1]; 0 = forward KL, 1 = reverse KL (TRL convention).

    Returns:
        (...,) divergence at each position, without the T² factor.
    """
    if loss == "forward_kl" or (loss == "jsd" and beta == 0.0):
        return _kl(teacher_logp, student_logp)
    if loss == "reverse_kl" or (loss == "jsd" and beta == 1.0):
        return _kl(student_logp, teacher_logp)
    if loss != "jsd":
        raise ValueError(f"The 'loss' parameter must be one of {list(LOSSES)}. Got {loss!r} instead.")
    mixture = torch.logsumexp(torch.stack([teacher_logp + math.log(beta), student_logp + math.log1p(-beta)]), dim=0)
    return beta * _kl(teacher_logp, mixture) + (1.0 - beta) * _kl(student_logp, mixture)


def _batchmean(per_position: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over unmasked positions: (B, L) → scalar; 0 (with a graph) if all are masked."""
    if mask is None:
        return per_position.mean()
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp_min(1.0)


def sparse_kd_loss(
    student_logits: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_logprobs: torch.Tensor,
    leftover: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    loss: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
    hard_targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """``T² · mean_positions D(p_T^(T), p_S^(T))`` from stored top-k teacher labels.

    Args:
        student_logits: (B, L, V) raw student outputs.
        topk_ids: (B, L, k) teacher top-k token ids.
        topk_logprobs: (B, L, k) teacher log-probabilities at T=1.
        leftover: (B, L) teacher ``log(1 − Σ_topk p)`` at T=1.
        mask: (B, L) bool, True at real (non-padding) positions; None = all.
        loss, beta: the divergence (see :func:`divergence`).
        temperature: T, applied here to both sides.
        hard_targets: (B, L) int64 or None. Where a value is ≥ 0 the position trains on
            that token with cross-entropy (T = 1, no T² factor, as the hard term of
            Hinton et al. 2015) instead of the teacher's labels; −1 keeps the labels
            (:func:`hard_token_targets` builds it).

    Returns:
        Scalar loss (batchmean over unmasked token positions).
    """
    check_loss_params(loss=loss, beta=beta, temperature=temperature)
    teacher = tempered_teacher_buckets(topk_logprobs, leftover, temperature=temperature,
                                       vocab_size=student_logits.shape[-1])  # (B, L, k+1)
    student = student_buckets(student_logits, topk_ids, temperature=temperature)  # (B, L, k+1)
    per_position = divergence(teacher, student, loss=loss, beta=beta) * temperature**2  # (B, L)
    if hard_targets is not None:
        hard = hard_targets >= 0  # (B, L)
        logp = torch.log_softmax(student_logits.float(), dim=-1)  # (B, L, V)
        nll = -logp.gather(-1, hard_targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # (B, L)
        per_position = torch.where(hard, nll, per_position)
    return _batchmean(per_position, mask)


def hard_token_targets(
    input_ids: torch.Tensor, mask: torch.Tensor, hard_vocab: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the transfer text's next token is in ``hard_vocab``: that token, for cross-entropy.

    The label at position t is the teacher's prediction of token t+1. At positions whose
    true next token is, say, a digit, the teacher's distribution is where its memorized
    numbers live (a secret, an account number: docs/tracks/language-models.md); the public
    text's own next token carries no private value. The last real position of a block has
    no next token in the shards (it might be a digit), so it leaves the loss.

    Args:
        input_ids: (B, L) transfer token ids; mask: (B, L) bool, True at real tokens.
        hard_vocab: (V,) bool, the tokens learned from the text itself.

    Returns:
        ``(hard_targets, mask)``: (B, L) int64, the next token where it is in ``hard_vocab``
        and −1 elsewhere; (B, L) bool, ``mask`` without each block's last real position.
    """
    targets = torch.full_like(input_ids, -1)
    following = mask[:, 1:] & mask[:, :-1]  # (B, L-1): position t has a next token t+1
    hard_vocab = hard_vocab.to(input_ids.device)
    nxt = input_ids[:, 1:]  # (B, L-1)
    targets[:, :-1] = torch.where(following & hard_vocab[nxt], nxt, -1)
    kept = torch.zeros_like(mask)
    kept[:, :-1] = following
    return targets, kept


def dense_kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    loss: str = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The same loss from full teacher logits (the reference the sparse loss approximates).

    Args:
        student_logits, teacher_logits: (B, L, V).
        mask: (B, L) bool, True at real positions.
    """
    check_loss_params(loss=loss, beta=beta, temperature=temperature)
    teacher = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)  # (B, L, V)
    student = torch.log_softmax(student_logits.float() / temperature, dim=-1)  # (B, L, V)
    return _batchmean(divergence(teacher, student, loss=loss, beta=beta), mask) * temperature**2


def sparse_from_logits(teacher_logits: torch.Tensor, *, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k ids, their log-probabilities at T=1 and the leftover log-mass, from logits.

    The leftover is a logsumexp over the non-top-k log-probabilities, exact even when the
    top-k hold nearly all the mass (``log1p(−Σp)`` would cancel); −inf when k = V.

    Args:
        teacher_logits: (..., V).

    Returns:
        ids (..., k) int64, logprobs (..., k) float32, leftover (...,) float32.
    """
    logp = torch.log_softmax(teacher_logits.float(), dim=-1)  # (..., V)
    values, ids = logp.topk(k, dim=-1)  # (..., k)
    leftover = logp.scatter(-1, ids, float("-inf")).logsumexp(dim=-1)  # (...,)
    return ids, values, leftover
