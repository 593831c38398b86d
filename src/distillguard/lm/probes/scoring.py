"""Token log-probabilities of texts under a causal LM, batched, with padding masks.

Every probe reduces to the same measurement: ``ln p(x_t | x_<t)`` of each token of a
sequence. Sequences are sorted by length, right-padded per batch (causal attention keeps
the real tokens blind to the padding that follows them) and returned with a mask, so the
result does not depend on ``batch_size`` (up to float rounding).

Candidate continuations (canary fillings, PII values) are scored by tokenizing
``prefix + candidate`` JOINTLY and scoring every token from the first one where the joint
tokenization departs from the prefix's own tokenization. Tokenizing the prefix and the
candidate separately is wrong: a byte-level BPE turns ``"my PIN is " + "281946"`` into
``... "Ġis" "Ġ" "281" "946"`` instead of ``... "Ġis" "Ġ281" "946"``, a token sequence the
model never saw, which understates a memorized secret by several bits.

Texts are tokenized as the tokenizer does by default, special tokens included: if the
model was trained on texts framed by BOS/EOS tokens, give it a tokenizer that adds them
(a post-processor, as Llama's tokenizer has), and every probe sees text as training did.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "TokenLogProbs",
    "common_prefix_length",
    "context_length",
    "continuation_ids",
    "continuation_logprobs",
    "encode",
    "encode_bare",
    "encode_prompts",
    "eval_mode",
    "model_device",
    "score_token_ids",
    "special_affixes",
    "text_logprobs",
]


@dataclass(frozen=True)
class TokenLogProbs:
    """Per-token log-probabilities of ``n`` sequences, right-padded to the longest, ``T``.

    Column ``t`` holds the prediction of input token ``t`` from tokens ``< t`` (natural
    log). Column 0 has no context and is never scored.

    Attributes:
        logprobs: ``(n, T)`` float64, ``ln p(x_t | x_<t)``; 0 where ``mask`` is False.
        mask: ``(n, T)`` bool, True at the scored tokens.
        mu: ``(n, T)`` or None: ``μ_t = Σ_v p_t(v) ln p_t(v)``, the mean log-probability
            under the model's full next-token distribution at ``t`` (min-k%++).
        sigma: ``(n, T)`` or None: ``σ_t = sqrt(Σ_v p_t(v) (ln p_t(v))² − μ_t²)``.
    """

    logprobs: np.ndarray
    mask: np.ndarray
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None

    def __len__(self) -> int:
        return self.logprobs.shape[0]

    def rows(self) -> list[np.ndarray]:
        """Scored log-probs of each sequence, a list of ``n`` arrays ``(T_i,)``."""
        return [row[m] for row, m in zip(self.logprobs, self.mask, strict=True)]

    def moment_rows(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(mu rows, sigma rows)`` aligned with :meth:`rows`; needs ``moments=True`` scoring."""
        if self.mu is None or self.sigma is None:
            raise ValueError("these log-probs were scored without the next-token distribution's moments; "
                             "score with moments=True (needed by min-k%++)")
        mu = [row[m] for row, m in zip(self.mu, self.mask, strict=True)]
        sigma = [row[m] for row, m in zip(self.sigma, self.mask, strict=True)]
        return mu, sigma

    def n_tokens(self) -> np.ndarray:
        """Number of scored tokens per sequence, ``(n,)`` int."""
        return self.mask.sum(axis=1)

    def total_logprob(self) -> np.ndarray:
        """``Σ_t ln p(x_t | x_<t)`` over the scored tokens, ``(n,)``."""
        return np.where(self.mask, self.logprobs, 0.0).sum(axis=1)

    def mean_logprob(self) -> np.ndarray:
        """Mean scored log-prob per sequence (−mean NLL, nats/token), ``(n,)``."""
        return self.total_logprob() / self.n_tokens()

    def log_perplexity_bits(self) -> np.ndarray:
        """Carlini et al. 2019's log-perplexity ``−log2 Pr(x)`` of the scored tokens, ``(n,)`` bits."""
        return -self.total_logprob() / math.log(2.0)


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text from a Hugging Face-style tokenizer callable.

    The tokenizer is called once on the list (special tokens as it adds them by default);
    its output must hold ``input_ids``.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not one string; wrap it in a list")
    if not texts:
        return []
    encoded = tokenizer(list(texts))
    ids = encoded["input_ids"] if isinstance(encoded, Mapping) or hasattr(encoded, "keys") else encoded.input_ids
    return [[int(t) for t in row] for row in ids]


def special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """``(head, tail)``: the ids the tokenizer adds before and after any text (BOS, EOS, ...).

    Read off the encoding of the empty string, so it holds for any tokenizer callable.
    """
    empty = encode(tokenizer, [""])[0]
    text = encode(tokenizer, ["a"])[0]
    head = common_prefix_length(empty, text)
    return empty[:head], empty[head:]


def encode_prompts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of texts that are to be continued: any tokens the tokenizer appends
    (a trailing EOS) are removed; tokens it prepends (BOS) are kept."""
    _, tail = special_affixes(tokenizer)
    return [_strip_tail(ids, tail) for ids in encode(tokenizer, texts)]


def encode_bare(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of texts without the tokens the tokenizer adds before or after them."""
    head, tail = special_affixes(tokenizer)
    out = []
    for ids in encode(tokenizer, texts):
        ids = ids[len(head):] if ids[:len(head)] == head else ids
        out.append(_strip_tail(ids, tail))
    return out


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading positions where ``a`` and ``b`` hold the same token."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's parameters (``model.device`` for a ``PreTrainedModel``)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device


def context_length(model: torch.nn.Module) -> int | None:
    """Longest sequence the model accepts (``n_positions`` / ``max_position_embeddings``), or None."""
    config = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode (no dropout) and restore its training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def score_token_ids(model: torch.nn.Module, input_ids: Sequence[Sequence[int]], *,
                    score_from: Sequence[int] | None = None, batch_size: int = 16, moments: bool = False,
                    pad_token_id: int = 0) -> TokenLogProbs:
    """Log-probability of every token of every sequence, batched, right-padded and masked.

    Args:
        model: a causal LM whose forward ``(input_ids, attention_mask)`` returns ``.logits``
            ``(B, T, V)`` (any Hugging Face ``PreTrainedModel`` for causal LM).
        input_ids: ``n`` token-id sequences, each at least 2 tokens long.
        score_from: per sequence, the index of the first scored token (≥ 1; tokens before it
            are context only). Default 1: every token that has a context.
        batch_size: sequences per forward pass; the result does not depend on it.
        moments: also return ``μ_t`` and ``σ_t`` of the full next-token distribution
            (min-k%++, Zhang et al. 2024), at the cost of two more ``(B, T, V)`` reductions.
        pad_token_id: id written in padded positions (masked out, so any valid id works).

    Returns:
        :class:`TokenLogProbs` with ``(n, T)`` arrays, ``T`` the longest sequence.
    """
    sequences = [list(map(int, s)) for s in input_ids]
    starts = [1] * len(sequences) if score_from is None else [int(s) for s in score_from]
    _check_sequences(model, sequences, starts, batch_size)
    n, width = len(sequences), max((len(s) for s in sequences), default=0)
    logprobs = np.zeros((n, width))
    mask = np.zeros((n, width), dtype=bool)
    mu = np.zeros((n, width)) if moments else None
    sigma = np.zeros((n, width)) if moments else None
    order = sorted(range(n), key=lambda i: -len(sequences[i]))  # similar lengths share a batch
    device = model_device(model)
    with eval_mode(model), torch.inference_mode():
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            batch = [sequences[i] for i in index]
            out = _score_batch(model, batch, device=device, pad_token_id=pad_token_id, moments=moments)
            for row, i in enumerate(index):
                length = len(sequences[i])
                logprobs[i, 1:length] = out[0][row, :length - 1]
                mask[i, starts[i]:length] = True
                if moments:
                    mu[i, 1:length] = out[1][row, :length - 1]
                    sigma[i, 1:length] = out[2][row, :length - 1]
    logprobs[~mask] = 0.0
    return TokenLogProbs(logprobs=logprobs, mask=mask, mu=mu, sigma=sigma)


def text_logprobs(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16,
                  moments: bool = False, max_length: int | None = None) -> TokenLogProbs:
    """Log-probability of every token (after the first) of each whole text.

    Args:
        model: causal LM returning ``.logits``.
        tokenizer: Hugging Face-style tokenizer callable.
        texts: ``n`` texts, each at least 2 tokens long.
        batch_size: texts per forward pass.
        moments: also compute ``μ_t``, ``σ_t`` (min-k%++).
        max_length: keep only the first ``max_length`` tokens of each text; None keeps all
            (a text longer than the model's context is then an error, not truncated silently).

    Returns:
        :class:`TokenLogProbs`, ``(n, T)``.
    """
    ids = encode(tokenizer, texts)
    if max_length is not None:
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 tokens; got {max_length}")
        ids = [row[:max_length] for row in ids]
    return score_token_ids(model, ids, batch_size=batch_size, moments=moments, pad_token_id=_pad_id(tokenizer))


def continuation_logprobs(model: torch.nn.Module, tokenizer: Any, *, prefix: str | Sequence[str],
                          candidates: Sequence[str], batch_size: int = 16, moments: bool = False) -> TokenLogProbs:
    """Log-probabilities of the tokens of each candidate after its prefix, tokenized jointly.

    ``prefix + candidate`` is tokenized as one string; the scored tokens are those from the
    first position where this joint tokenization departs from the prefix's own, so a token
    that straddles the boundary (``"Ġ281"`` after ``"... is "``) counts as the candidate's.
    Never tokenize the two parts separately (see the module docstring). A BOS token the
    tokenizer prepends is kept as context; an EOS it appends is not scored. Token 0 is
    never scored (no context), so an empty-prefix candidate loses its first token unless
    the tokenizer adds a BOS token.

    Args:
        model: causal LM returning ``.logits``.
        tokenizer: Hugging Face-style tokenizer callable.
        prefix: one prefix for all candidates, or one per candidate.
        candidates: ``n`` candidate strings appended to their prefix verbatim.
        batch_size: sequences per forward pass.
        moments: also compute ``μ_t``, ``σ_t``.

    Returns:
        :class:`TokenLogProbs` whose mask covers each candidate's tokens only;
        ``log_perplexity_bits()`` is then Carlini et al. 2019's ``Px(candidate | prefix)``.
    """
    joint, starts = continuation_ids(tokenizer, prefix=prefix, candidates=candidates)
    return score_token_ids(model, joint, score_from=starts, batch_size=batch_size, moments=moments,
                           pad_token_id=_pad_id(tokenizer))


def continuation_ids(tokenizer: Any, *, prefix: str | Sequence[str],
                     candidates: Sequence[str]) -> tuple[list[list[int]], list[int]]:
    """``(joint ids, first scored index)`` of each ``prefix + candidate``, tokenized jointly.

    What :func:`continuation_logprobs` scores, without a model: candidate ``i`` is scored on
    ``len(joint[i]) − starts[i]`` tokens (the exposure probe matches references on it).
    """
    prefixes = [prefix] * len(candidates) if isinstance(prefix, str) else list(prefix)
    if len(prefixes) != len(candidates):
        raise ValueError(f"got {len(prefixes)} prefixes for {len(candidates)} candidates; "
                         "pass one prefix, or one per candidate")
    joint = encode_prompts(tokenizer, [p + c for p, c in zip(prefixes, candidates, strict=True)])
    unique = sorted(set(prefixes))
    prefix_ids = dict(zip(unique, encode_prompts(tokenizer, unique), strict=True))
    starts = []
    for i, (p, ids) in enumerate(zip(prefixes, joint, strict=True)):
        start = max(1, common_prefix_length(ids, prefix_ids[p]))
        if start >= len(ids):
            raise ValueError(f"candidate {i} adds no token to its prefix (joint tokenization has {len(ids)} "
                             "tokens); candidates must be non-empty")
        starts.append(start)
    return joint, starts


# --- internals ----------------------------------------------------------------------------------


def _strip_tail(ids: list[int], tail: list[int]) -> list[int]:
    return ids[:len(ids) - len(tail)] if tail and ids[len(ids) - len(tail):] == tail else ids


def _score_batch(model: torch.nn.Module, batch: list[list[int]], *, device: torch.device, pad_token_id: int,
                 moments: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Target log-probs ``(b, T−1)`` (and ``μ``, ``σ``) of one right-padded batch."""
    width = max(len(s) for s in batch)
    ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, seq in enumerate(batch):
        ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention[row, :len(seq)] = 1
    ids, attention = ids.to(device), attention.to(device)
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()  # (b, T-1, V)
    logp = torch.log_softmax(logits, dim=-1)  # (b, T-1, V)
    target = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # (b, T-1)
    if not moments:
        return target.double().cpu().numpy(), None, None
    p = logp.exp()  # (b, T-1, V)
    mu = torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)  # (b, T-1)
    # σ² = Σ p (ln p − μ)², equal to Σ p (ln p)² − μ² without its float32 cancellation
    centered = torch.where(p > 0, p * (logp - mu[..., None]).square(), torch.zeros_like(p))
    sigma = centered.sum(-1).sqrt()
    return (target.double().cpu().numpy(), mu.double().cpu().numpy(), sigma.double().cpu().numpy())


def _check_sequences(model: torch.nn.Module, sequences: list[list[int]], starts: list[int], batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if len(starts) != len(sequences):
        raise ValueError(f"score_from has {len(starts)} entries for {len(sequences)} sequences")
    limit = context_length(model)
    for i, (seq, start) in enumerate(zip(sequences, starts, strict=True)):
        if len(seq) < 2:
            raise ValueError(f"sequence {i} has {len(seq)} token(s); scoring needs at least 2 "
                             "(the first token has no context)")
        if not 1 <= start < len(seq):
            raise ValueError(f"score_from[{i}] = {start} must be in [1, {len(seq) - 1}] for a sequence "
                             f"of {len(seq)} tokens")
        if limit is not None and len(seq) > limit:
            raise ValueError(f"sequence {i} has {len(seq)} tokens but the model's context is {limit}; "
                             "shorten the text or pass max_length")


def _pad_id(tokenizer: Any) -> int:
    """A valid token id for padding (masked out): pad, else EOS, else 0."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    return 0
