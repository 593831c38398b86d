"""Split-AI (Tang et al., USENIX Security 2022, "Mitigating Membership Inference Attacks by
Self-Distillation Through a Novel Ensemble Architecture", SELENA Sec. 4.1).

K sub-models are trained on overlapping subsets of the members: every member is left out
of exactly L of them, chosen at random. The Split-AI answers a query with the average
probability of L sub-models:

- an input that is a training record is answered by the L sub-models that never saw it,
  so its answer does not depend on the record's own label or presence;
- any other input (public transfer data, test data, an attacker's probe) is answered by
  L sub-models picked by a keyed hash of the input, so the same input always gets the
  same answer and repeating a query reveals nothing new (SELENA's defence against the
  adaptive attacker who averages answers over several sub-model subsets).

A member is recognised by its exact (scaled, float32) feature row. Identical rows are
one record for the exclusion: a sub-model that trained on a copy has seen the input, so
all copies share one exclusion set. The table holds 64-bit row hashes, never the rows.

Everything here is pure: hashing, the exclusion draw, routing and the module that
answers. Training the sub-models is :mod:`distillguard.train.split_ai`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch
from torch import nn

_MASK = (1 << 64) - 1


def row_keys(X: np.ndarray) -> np.ndarray:
    """(n,) uint64: a blake2b hash of each row's float32 bytes (rows of any shape)."""
    rows = np.ascontiguousarray(np.asarray(X, dtype=np.float32).reshape(len(X), -1))
    return np.fromiter((int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
                        for row in rows), dtype=np.uint64, count=len(rows))


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def route(keys: np.ndarray, *, k: int, l: int, salt: int) -> np.ndarray:
    """(n, l) int64: the sub-models answering non-member inputs, a keyed hash of each key.

    Sub-model t gets the score ``mix(key ^ salt, t)``; the ``l`` lowest scores answer, in
    increasing index order. Deterministic in (key, salt) and uniform over l-subsets.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    with np.errstate(over="ignore"):
        base = _mix(keys ^ np.uint64(salt & _MASK))  # (n,)
        scores = _mix(base[:, None] + np.arange(1, k + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))  # (n, k)
    return np.sort(np.argsort(scores, axis=1, kind="stable")[:, :l], axis=1).astype(np.int64)


def assign_exclusions(keys: np.ndarray, *, k: int, l: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Leave every distinct key out of exactly ``l`` of ``k`` sub-models, at random, balanced.

    Keys are visited in a random order; each goes to the ``l`` sub-models that have left
    out the fewest rows so far (ties broken at random), counting a key's copies. With
    distinct keys the sub-models' training sets differ in size by at most one row, so
    they train in at most two batched groups.

    Returns:
        (table_keys, excluded): the (u,) sorted distinct keys and (u, l) int64, the
        sub-models each one is left out of (sorted), which are the ones that answer it.
    """
    if not 1 <= l < k:
        raise ValueError(f"Split-AI needs 1 <= l < k, got k={k}, l={l}")
    table_keys, counts = np.unique(np.asarray(keys, dtype=np.uint64), return_counts=True)
    rng = np.random.default_rng(seed)
    excluded = np.zeros((len(table_keys), l), dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for i in rng.permutation(len(table_keys)):
        order = np.lexsort((rng.random(k), load))  # fewest left out first, ties at random
        chosen = np.sort(order[:l])
        excluded[i] = chosen
        load[chosen] += counts[i]
    return table_keys, excluded


def training_rows(keys: np.ndarray, table_keys: np.ndarray, excluded: np.ndarray, *, k: int) -> list[np.ndarray]:
    """The rows (indices into ``keys``) each of the ``k`` sub-models trains on: all but those left out of it."""
    position = np.searchsorted(table_keys, keys)
    if not np.array_equal(table_keys[np.minimum(position, len(table_keys) - 1)], keys):
        raise ValueError("every key must be in the exclusion table")
    left_out = np.zeros((len(keys), k), dtype=bool)
    np.put_along_axis(left_out, excluded[position], True, axis=1)
    return [np.flatnonzero(~left_out[:, t]).astype(np.int64) for t in range(k)]


def answering(keys: np.ndarray, table_keys: np.ndarray, excluded: np.ndarray, *, k: int, salt: int) -> np.ndarray:
    """(n, l) int64: who answers each key: its exclusion set if it is a member, else :func:`route`."""
    keys = np.asarray(keys, dtype=np.uint64)
    l = excluded.shape[1]
    out = route(keys, k=k, l=l, salt=salt)
    if len(table_keys):
        position = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
        member = table_keys[position] == keys
        out[member] = excluded[position[member]]
    return out


def average_selected(log_probs: torch.Tensor, use: torch.Tensor) -> torch.Tensor:
    """log of the mean probability of the selected sub-models, per row.

    Args:
        log_probs: (K, B, C) each sub-model's log-probabilities.
        use: (B, L) int64 the sub-models answering each row.

    Returns:
        (B, C). Only the selected sub-models' values are read (a gather), so the others'
        outputs, whatever they are (NaN included), cannot change a row's answer.
    """
    K, B, C = log_probs.shape
    per_row = log_probs.permute(1, 0, 2)  # (B, K, C)
    picked = torch.gather(per_row, 1, use.to(per_row.device)[:, :, None].expand(B, use.shape[1], C))  # (B, L, C)
    return torch.logsumexp(picked, dim=1) - math.log(use.shape[1])


class SplitAI(nn.Module):
    """K sub-models answering as a Split-AI: members by the L that never saw them, others by hash.

    The exclusion table (64-bit row keys and their L answering sub-models) and the routing
    salt are buffers, so the model saves and loads as safetensors like any other.
    """

    def __init__(self, members: list[nn.Module], *, l: int, n_keys: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.l = int(l)
        self.register_buffer("table_keys", torch.zeros(n_keys, dtype=torch.int64))  # uint64 bits
        self.register_buffer("excluded", torch.zeros(n_keys, l, dtype=torch.int64))
        self.register_buffer("salt", torch.zeros(1, dtype=torch.int64))

    def set_table(self, table_keys: np.ndarray, excluded: np.ndarray, salt: int) -> None:
        self.table_keys.copy_(torch.from_numpy(np.asarray(table_keys, dtype=np.uint64).view(np.int64)))
        self.excluded.copy_(torch.from_numpy(np.asarray(excluded, dtype=np.int64)))
        self.salt.fill_(int(np.uint64(salt & _MASK).view(np.int64)))

    def answering(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) int64 the sub-models that answer each row of the (scaled) input."""
        keys = row_keys(x.detach().cpu().float().numpy())
        table = self.table_keys.cpu().numpy().view(np.uint64)
        salt = int(self.salt.cpu().numpy().view(np.uint64)[0])
        return torch.from_numpy(answering(keys, table, self.excluded.cpu().numpy(), k=len(self.members), salt=salt))

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (K, B, C)
        return torch.stack([member(x) for member in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B, C)
        return average_selected(torch.log_softmax(self.member_logits(x), dim=-1), self.answering(x))


def split_ai_architecture(base: dict[str, Any], *, k: int, l: int, n_keys: int) -> dict[str, Any]:
    """Architecture dict of a :class:`SplitAI` of ``k`` models of architecture ``base``."""
    return {"kind": "split-ai", "members": int(k), "answer": int(l), "n_keys": int(n_keys), "base": dict(base),
            "input_shape": list(base["input_shape"]), "n_classes": base["n_classes"]}
