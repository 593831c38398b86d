"""Seeded text generation shared by the PII, extraction and divergence probes.

Randomness is an input: sampling runs under ``torch.random.fork_rng`` seeded with
``seed``, so the caller's global RNG state is untouched and the same seed (and batch size)
gives the same generations. Prompts of different lengths are left-padded with an
attention mask, as Hugging Face ``generate`` expects for decoder-only models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from distillguard.lm.probes.scoring import context_length, eval_mode, model_device

__all__ = ["generate_continuations", "greedy_decode", "special_ids"]


def special_ids(tokenizer: Any) -> tuple[int, int | None]:
    """``(pad_id, eos_id)`` for generation: pad falls back to EOS, then to 0."""
    eos = getattr(tokenizer, "eos_token_id", None)
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = pad if isinstance(pad, int) else (eos if isinstance(eos, int) else 0)
    return pad, (eos if isinstance(eos, int) else None)


def generate_continuations(model: torch.nn.Module, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                           do_sample: bool, num_return_sequences: int = 1, seed: int = 0,
                           top_k: int | None = None, temperature: float = 1.0, batch_size: int = 16,
                           pad_token_id: int = 0, eos_token_id: int | None = None) -> list[list[list[int]]]:
    """New tokens generated after each prompt, cut at the first EOS (excluded).

    Args:
        model: a Hugging Face causal LM (``model.generate``).
        prompts: ``n`` token-id prompts, each non-empty; lengths may differ.
        max_new_tokens: tokens generated per continuation.
        do_sample: sample (True) or greedy (False; then ``num_return_sequences`` must be 1).
        num_return_sequences: continuations per prompt.
        seed: sampling seed.
        top_k: sample among the ``k`` most likely tokens; None samples the full distribution.
        temperature: sampling temperature.
        batch_size: prompts per ``generate`` call.
        pad_token_id: id used for left padding (masked) and after EOS.
        eos_token_id: generation stops at this id and the continuation is cut before it;
            None leaves stopping to the model's generation config and cuts nothing.

    Returns:
        ``result[i][j]``: the ``j``-th continuation of prompt ``i``, a list of token ids.
    """
    if not do_sample and num_return_sequences != 1:
        raise ValueError(f"greedy decoding gives one continuation per prompt; got num_return_sequences="
                         f"{num_return_sequences}")
    if max_new_tokens < 1 or batch_size < 1 or num_return_sequences < 1:
        raise ValueError(f"max_new_tokens, batch_size and num_return_sequences must be at least 1; got "
                         f"{max_new_tokens}, {batch_size}, {num_return_sequences}")
    rows = [list(map(int, p)) for p in prompts]
    _check_room(model, rows, max_new_tokens)
    device = model_device(model)
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                               "num_return_sequences": num_return_sequences, "pad_token_id": pad_token_id,
                               "eos_token_id": eos_token_id}
    if do_sample:
        options.update(top_k=top_k or 0, top_p=1.0, temperature=temperature)
    results: list[list[list[int]]] = []
    cuda = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with eval_mode(model), torch.inference_mode(), torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            ids, attention = _left_pad(batch, pad_token_id)
            out = model.generate(input_ids=ids.to(device), attention_mask=attention.to(device), **options)
            new = out[:, ids.shape[1]:].cpu().tolist()  # (b * r, new), grouped by prompt
            for i in range(len(batch)):
                group = new[i * num_return_sequences:(i + 1) * num_return_sequences]
                results.append([_cut_at(seq, eos_token_id) for seq in group])
    return results


def greedy_decode(model: torch.nn.Module, prompts: Sequence[Sequence[int]], *, steps: int,
                  batch_size: int = 32) -> np.ndarray:
    """Exactly ``steps`` greedy (argmax) tokens after each equal-length prompt, never stopping at EOS.

    Carlini et al. 2022 ("Quantifying Memorization") define k-extractability by greedy
    decoding; this loop does not stop early, so the output always has ``steps`` tokens.

    Args:
        model: causal LM returning ``.logits`` and ``.past_key_values``.
        prompts: ``n`` prompts of one common length ``k``.
        steps: tokens to generate.
        batch_size: prompts per batch.

    Returns:
        ``(n, steps)`` int64 token ids.
    """
    rows = [list(map(int, p)) for p in prompts]
    if len({len(r) for r in rows}) > 1 or (rows and not rows[0]):
        raise ValueError("greedy_decode needs non-empty prompts of one common length; got lengths "
                         f"{sorted({len(r) for r in rows})}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}")
    _check_room(model, rows, steps)
    device = model_device(model)
    out = np.zeros((len(rows), steps), dtype=np.int64)
    with eval_mode(model), torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            ids = torch.tensor(rows[start:start + batch_size], dtype=torch.long, device=device)  # (b, k)
            result = model(input_ids=ids, use_cache=True)
            tokens = [result.logits[:, -1].argmax(-1)]  # (b,)
            while len(tokens) < steps:
                cache = _cache_of(result)
                if cache:  # feed only the new token; the cache holds the keys/values of the rest
                    result = model(input_ids=tokens[-1][:, None], use_cache=True, **cache)
                else:  # a model without a KV cache: recompute over the whole sequence
                    ids = torch.cat([ids, tokens[-1][:, None]], dim=1)
                    result = model(input_ids=ids)
                tokens.append(result.logits[:, -1].argmax(-1))
            out[start:start + len(tokens[0])] = torch.stack(tokens, dim=1).cpu().numpy()  # (b, steps)
    return out


def _cache_of(result: Any) -> dict[str, Any]:
    """The KV cache of a forward output as the keyword the next call takes.

    transformers 5 names it ``cache``; earlier releases ``past_key_values``.
    """
    for name in ("cache", "past_key_values"):
        value = getattr(result, name, None)
        if value is not None:
            return {name: value}
    return {}


def _left_pad(batch: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in batch)
    ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, prompt in enumerate(batch):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        attention[row, width - len(prompt):] = 1
    return ids, attention


def _cut_at(seq: list[int], eos_token_id: int | None) -> list[int]:
    if eos_token_id is not None and eos_token_id in seq:
        return seq[:seq.index(eos_token_id)]
    return seq


def _check_room(model: torch.nn.Module, rows: list[list[int]], new_tokens: int) -> None:
    if any(len(r) == 0 for r in rows):
        raise ValueError("every prompt needs at least one token (e.g. the BOS/EOS token)")
    limit = context_length(model)
    longest = max((len(r) for r in rows), default=0)
    if limit is not None and longest + new_tokens > limit:
        raise ValueError(f"a prompt of {longest} tokens plus {new_tokens} new tokens exceeds the model's "
                         f"context of {limit}; shorten the prompt or generate fewer tokens")
