"""Private prediction for causal LMs: a partitioned teacher ensemble mixed with a public model.

``[softlabels] private_prediction`` (PMixED, Flemings et al. 2024; SubMix, Ginart et al.
2022): the members are split into ``shards`` disjoint parts by a seeded hash of each
document (:func:`shard_of`: adding or removing a document changes one shard), a public
model is trained on the transfer text only, and one teacher per shard is fine-tuned from
it on its shard alone (:func:`train_private_ensemble`). The label stage then answers each
queried position of the transfer text (:class:`PrivateLabeller`): every shard teacher's
next-token distribution is mixed with the public one into a max-divergence ball of radius
b (:func:`~distillguard.privacy.private_prediction.mixing_weights`), the mixtures are
averaged and **one token is sampled**; the stored label is ``(1 − w) p_0 + w·onehot(token)``,
a post-processing of the sample and of public information. Positions not queried get
``p_0``. The accounting is :mod:`distillguard.privacy.private_prediction`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from distillguard.lm.blocks import batch_with_mask, encode_blocks
from distillguard.lm.losses import sparse_from_logits
from distillguard.lm.train import train_causal_lm
from distillguard.privacy.private_prediction import data_dependent_query_epsilon, mixing_weights
from distillguard.seeding import derive_seed

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PUBLIC_DIR = "public"
SHARDS_DIR = "shards"
PUBLIC_COPY_DIR = "public-model"  # the public model's copy beside the soft labels, for the student to start from


def shard_of(text: str, *, shards: int, seed: int) -> int:
    """The shard of one document: a seeded hash of its text alone, so no other document moves it."""
    digest = hashlib.sha256(f"{seed}/private-prediction/{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def assign_shards(texts: Sequence[str], *, shards: int, seed: int) -> np.ndarray:
    """(len(texts),) int: each document's shard (:func:`shard_of`)."""
    return np.array([shard_of(t, shards=shards, seed=seed) for t in texts], dtype=np.int64)


def query_mask(block: Sequence[int], *, fraction: float, seed: int) -> np.ndarray:
    """(len(block),) bool: the positions of one block answered privately, a seeded function of the
    block's public token ids alone (so counting them before labelling gives the same set)."""
    if fraction >= 1.0:
        return np.ones(len(block), dtype=bool)
    key = derive_seed(seed, "query", hashlib.sha256(np.asarray(block, np.int64).tobytes()).hexdigest())
    return np.random.default_rng(key).random(len(block)) < fraction


def train_private_ensemble(build_model: Callable[[], PreTrainedModel], tokenizer, *, members: Sequence[str],
                           public_texts: Sequence[str], shards: int, recipe: dict[str, Any], seed: int,
                           folder: Path, save: Callable[[PreTrainedModel, Path], None],
                           on_model: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the public model on ``public_texts``, then one copy of it per shard on that shard's members.

    Args:
        build_model: a fresh (or loaded) base model, called once.
        recipe: ``epochs``, ``lr``, ``batch_size``, ``weight_decay`` of :func:`train_causal_lm`.
        folder: the teacher folder; writes ``public/`` and ``shards/shard-NNN/``.
        save: writes a model into a folder (``save_causal_lm`` with the tokenizer).

    Returns:
        The stage record's ``private_prediction`` facts (documents per shard, tokens).
    """
    import copy
    import os

    from distillguard.lm.models import context_length

    public = build_model()
    block_len = context_length(public)
    public_blocks = encode_blocks(tokenizer, public_texts, block_len=block_len)
    train_causal_lm(public, public_blocks, seed=derive_seed(seed, "public", "train"), **recipe)
    save(public, folder / PUBLIC_DIR)
    if on_model is not None:
        on_model("public")
    assignment = assign_shards(members, shards=shards, seed=seed)
    counts = []
    for shard in range(shards):
        model = copy.deepcopy(public)
        texts = [t for t, s in zip(members, assignment) if s == shard]
        if texts:  # an empty shard's teacher is the public model: its mixture adds nothing private
            train_causal_lm(model, encode_blocks(tokenizer, texts, block_len=block_len),
                            seed=derive_seed(seed, "shard", shard, "train"), **recipe)
        save(model, folder / SHARDS_DIR / f"shard-{shard:03d}")
        os.chmod(folder / SHARDS_DIR, 0o700)  # each shard teacher memorizes its members
        counts.append(len(texts))
        if on_model is not None:
            on_model(f"shard {shard}")
    return {"shards": shards, "documents_per_shard": counts, "public_tokens": public_blocks.n_tokens,
            "public_source": "the transfer documents the leak and prefix guards keep"}


class PrivateLabeller:
    """Labels batches of transfer blocks by private prediction (a ``labeller`` of ``write_soft_labels``).

    Attributes after labelling: ``queries`` (positions answered privately), ``lambda_sum``
    (sum over queries and shards of λ, for the mean), ``dd_max`` / ``dd_rdp_terms``
    (the data-dependent per-query costs: their max and their sum of squares).
    """

    def __init__(self, shard_models: Sequence[PreTrainedModel], public: PreTrainedModel, *, radius: float,
                 sample_weight: float, query_fraction: float, seed: int) -> None:
        self.shards, self.public = list(shard_models), public
        self.radius, self.weight, self.fraction, self.seed = radius, sample_weight, query_fraction, seed
        self.queries, self.lambda_sum, self.dd_max, self.dd_sum, self.dd_square_sum = 0, 0.0, 0.0, 0.0, 0.0

    @torch.no_grad()
    def __call__(self, blocks: Sequence[Sequence[int]], *, k: int) -> dict[str, torch.Tensor]:
        ids, mask = batch_with_mask(blocks)
        queried = torch.zeros_like(mask)
        for row, block in enumerate(blocks):
            queried[row, : len(block)] = torch.from_numpy(query_mask(block, fraction=self.fraction, seed=self.seed))
        logp0 = _log_probs(self.public, ids, mask)  # (B, L, V) float64
        p0 = logp0.exp()
        mixed = torch.stack([self._mollified(_log_probs(m, ids, mask), logp0, queried) for m in self.shards])  # (n, B, L, V)
        total = mixed.mean(dim=0)  # (B, L, V)
        tokens = self._sample(total, blocks)  # (B, L)
        target = (1 - self.weight) * p0 + self.weight * torch.nn.functional.one_hot(tokens, p0.shape[-1]).to(p0.dtype)
        target = torch.where(queried[..., None], target, p0)
        self._account_data_dependent(mixed, p0, queried)
        topk_ids, topk_logprobs, leftover = sparse_from_logits(target.clamp_min(1e-300).log(), k=k)
        return {"ids": ids, "mask": mask, "topk_ids": topk_ids, "topk_logprobs": topk_logprobs, "leftover": leftover}

    def _mollified(self, logp: torch.Tensor, logp0: torch.Tensor, queried: torch.Tensor) -> torch.Tensor:
        """p̄ = λ p + (1 − λ) p0 with the largest λ that keeps p̄ / p0 within [e^−b, e^b] (0 where not queried)."""
        ratio = (logp - logp0).exp()  # (B, L, V)
        lam = torch.from_numpy(mixing_weights(ratio.amax(-1).numpy(), ratio.amin(-1).numpy(), self.radius))
        lam = torch.where(queried, lam, torch.zeros_like(lam))  # (B, L)
        self.lambda_sum += float(lam[queried].sum())
        return lam[..., None] * logp.exp() + (1 - lam[..., None]) * logp0.exp()

    def _sample(self, total: torch.Tensor, blocks: Sequence[Sequence[int]]) -> torch.Tensor:
        """One token per position from the averaged mixture, seeded by the batch's public token ids."""
        key = hashlib.sha256(b"".join(np.asarray(b, np.int64).tobytes() for b in blocks)).hexdigest()
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "sample", key))
        flat = total.reshape(-1, total.shape[-1]).clamp_min(0)
        return torch.multinomial(flat, 1, generator=generator).reshape(total.shape[:-1])

    def _account_data_dependent(self, mixed: torch.Tensor, p0: torch.Tensor, queried: torch.Tensor) -> None:
        n_queries = int(queried.sum())
        if n_queries == 0:
            return
        self.queries += n_queries
        costs = data_dependent_query_epsilon(mixed[:, queried].transpose(0, 1).numpy(), p0[queried].numpy(),
                                             self.radius)  # (Q,)
        self.dd_max = max(self.dd_max, float(costs.max()))
        self.dd_sum += float(costs.sum())
        self.dd_square_sum += float((costs ** 2).sum())


def _log_probs(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    device = model.device
    logits = model(input_ids=ids.to(device), attention_mask=mask.long().to(device)).logits
    return torch.log_softmax(logits.double(), dim=-1).cpu()  # (B, L, V) float64
