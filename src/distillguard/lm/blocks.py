"""Texts to fixed-length token blocks (the unit every LM stage trains and labels on).

Documents are tokenized, each followed by EOS, concatenated and cut into blocks of
``block_len`` tokens (GPT-2 style packing, no token dropped). Only the last block can be
shorter; it is right-padded, and its ``length`` says how many tokens are real. With
causal attention, real positions never attend to the padding after them, so padding only
needs masking in the losses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_ENCODE_CHUNK = 256


@dataclass(frozen=True)
class TokenBlocks:
    """Packed token blocks.

    Attributes:
        ids: (N, L) int64 token ids, right-padded with ``pad_id``.
        lengths: (N,) int64 number of real tokens per block (L except maybe the last).
        pad_id: the padding token id.
    """

    ids: torch.Tensor
    lengths: torch.Tensor
    pad_id: int

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def mask(self) -> torch.Tensor:
        """(N, L) bool, True at real tokens."""
        return torch.arange(self.ids.shape[1]) < self.lengths[:, None]

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())


def iter_token_blocks(
    tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], *, block_len: int
) -> Iterator[list[int]]:
    """Stream blocks of ``block_len`` token ids (the last one may be shorter).

    Consumes ``texts`` lazily, so labeling a large transfer corpus never holds it whole.
    """
    if block_len < 2:
        raise ValueError(f"The 'block_len' parameter of iter_token_blocks must be >= 2. Got {block_len!r} instead.")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token; train it with train_bpe_tokenizer or set eos_token")
    buffer: list[int] = []
    chunk: list[str] = []

    def flush() -> Iterator[list[int]]:
        for ids in tokenizer(chunk, add_special_tokens=False)["input_ids"]:
            buffer.extend(ids)
            buffer.append(eos)
        chunk.clear()
        while len(buffer) >= block_len:
            yield buffer[:block_len]
            del buffer[:block_len]

    for text in texts:
        chunk.append(text)
        if len(chunk) == _ENCODE_CHUNK:
            yield from flush()
    yield from flush()
    if buffer:
        yield list(buffer)


def encode_blocks(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], *, block_len: int) -> TokenBlocks:
    """All blocks of ``texts`` in memory (teacher training on the members)."""
    blocks = list(iter_token_blocks(tokenizer, texts, block_len=block_len))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return pad_blocks(blocks, block_len=block_len, pad_id=pad)


def pad_blocks(blocks: list[list[int]], *, block_len: int, pad_id: int) -> TokenBlocks:
    """Right-pad lists of ids (each at most ``block_len`` long) into a :class:`TokenBlocks`."""
    ids = torch.full((len(blocks), block_len), pad_id, dtype=torch.int64)
    lengths = torch.tensor([len(b) for b in blocks], dtype=torch.int64)
    for row, block in enumerate(blocks):
        if len(block) > block_len:
            raise ValueError(f"block {row} has {len(block)} tokens, more than block_len={block_len}")
        ids[row, : len(block)] = torch.tensor(block, dtype=torch.int64)
    return TokenBlocks(ids, lengths, pad_id)


def batch_with_mask(blocks: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token blocks as one batch right-padded to the longest: ``ids`` (B, L) int64, 0-padded; ``mask`` (B, L)."""
    length = max(len(b) for b in blocks)
    ids = torch.zeros((len(blocks), length), dtype=torch.int64)
    mask = torch.zeros((len(blocks), length), dtype=torch.bool)
    for row, block in enumerate(blocks):
        ids[row, : len(block)] = torch.as_tensor(block, dtype=torch.int64)
        mask[row, : len(block)] = True
    return ids, mask
