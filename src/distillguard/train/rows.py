"""Training rows in blocks, in memory or on disk, with one epoch order for both.

A student distilled from a large transfer set cannot hold all of it: its rows come in
blocks (one per label shard, ``[run] shard_rows`` records at most) that are read from
disk one or two at a time. The epoch order is therefore *block-local*: the blocks in a
random order, the rows of each block in a random order, minibatches cut from the
concatenation (a minibatch may straddle a block boundary). With one block this is exactly
``torch.randperm(n)``, so a set that fits in one shard trains as it always has.

The order depends only on the block sizes and the generator, never on where the rows
live, so :class:`TensorRows` and :class:`BlockRows` (in memory or on disk) with the same sizes give a model the
same minibatches bit for bit; the tests hold the streamed student to the in-memory one.
Block-local shuffling is the usual price of streaming (webdataset, Hugging Face
``IterableDataset.shuffle``): it mixes well when the rows of the transfer file are not
sorted by anything that matters, and docs/scale.md says to shuffle a sorted file first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch


def epoch_order(sizes: Sequence[int], generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One epoch's row indices, one block after another (see the module docstring).

    Lazy, so a streamed epoch holds the permutation of one block at a time; the draws from
    ``generator`` are the same, in the same order, however the pieces are consumed.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) <= 1:
        yield torch.randperm(sum(sizes), generator=generator)
        return
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for b in torch.randperm(len(sizes), generator=generator).tolist():
        yield int(offsets[b]) + torch.randperm(sizes[b], generator=generator)


def iter_batches(sizes: Sequence[int], *, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Minibatches of ``batch_size`` rows cut from :func:`epoch_order` (the last may be smaller)."""
    pending: list[torch.Tensor] = []
    held = 0
    for piece in epoch_order(sizes, generator):
        pending.append(piece)
        held += len(piece)
        if held < batch_size:
            continue
        joined = torch.cat(pending) if len(pending) > 1 else pending[0]
        whole = (held // batch_size) * batch_size
        yield from joined[:whole].split(batch_size)
        pending, held = ([joined[whole:]], held - whole) if held > whole else ([], 0)
    if held:
        yield torch.cat(pending) if len(pending) > 1 else pending[0]


class Rows(Protocol):
    """Training rows a loop can draw minibatches from."""

    @property
    def sizes(self) -> tuple[int, ...]:
        """Rows per block, in order; the row index space is their concatenation."""

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of the rows ``index`` (global indices), in that order."""

    def blocks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every block whole, in order: for validation and prediction, one block in memory at a time."""


def total(rows: Rows) -> int:
    return int(sum(rows.sizes))


class TensorRows:
    """Rows held in memory, optionally cut into blocks (to train as a streamed set would)."""

    def __init__(self, X: torch.Tensor, targets: torch.Tensor, sizes: Sequence[int] | None = None) -> None:
        if len(X) != len(targets):
            raise ValueError(f"X has {len(X)} rows but targets has {len(targets)}")
        sizes = (len(X),) if sizes is None else tuple(int(s) for s in sizes)
        if sum(sizes) != len(X):
            raise ValueError(f"block sizes {sizes} add up to {sum(sizes)}, not the {len(X)} rows")
        self.X, self.targets, self._sizes = X, targets, sizes

    @property
    def sizes(self) -> tuple[int, ...]:
        return self._sizes

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[index], self.targets[index]

    def blocks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        start = 0
        for size in self._sizes:
            yield self.X[start:start + size], self.targets[start:start + size]
            start += size


Transform = Callable[[np.ndarray], np.ndarray]
BlockLoader = Callable[[int], tuple[np.ndarray, np.ndarray]]


def write_npy_block(folder: Path, k: int, inputs: np.ndarray, targets: np.ndarray) -> None:
    """Block ``k`` as ``inputs-k.npy`` and ``targets-k.npy`` (scratch files of one stage run)."""
    np.save(folder / f"inputs-{k}.npy", np.ascontiguousarray(inputs), allow_pickle=False)
    np.save(folder / f"targets-{k}.npy", np.ascontiguousarray(targets), allow_pickle=False)


def npy_loader(folder: Path) -> BlockLoader:
    """Blocks written by :func:`write_npy_block`, read with ``allow_pickle=False`` (numbers only)."""
    folder = Path(folder)
    return lambda k: (np.load(folder / f"inputs-{k}.npy", allow_pickle=False),
                      np.load(folder / f"targets-{k}.npy", allow_pickle=False))


def array_loader(inputs: np.ndarray, targets: np.ndarray, sizes: Sequence[int]) -> BlockLoader:
    """Blocks of consecutive rows of in-memory arrays (the same interface as files on disk)."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return lambda k: (inputs[offsets[k]:offsets[k + 1]], targets[offsets[k]:offsets[k + 1]])


class BlockRows:
    """Rows in blocks that a loader reads on demand; at most ``cache`` blocks are held.

    Block ``k`` is ``loader(k)`` restricted to ``rows[k]`` (e.g. its training rows) and
    passed through ``transform`` (the student's scaler) as it is loaded. Two held blocks
    suffice for block-local minibatches: a minibatch straddles at most one block boundary
    when blocks hold at least a minibatch (shards do), and each block is then read once
    per epoch.
    """

    def __init__(self, loader: BlockLoader, rows: Sequence[np.ndarray], *, transform: Transform | None = None,
                 cache: int = 2) -> None:
        self.loader, self.rows, self.transform, self.cache = loader, [np.asarray(r) for r in rows], transform, cache
        self._sizes = tuple(len(r) for r in self.rows)
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes)]).astype(np.int64)
        self._held: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    @property
    def sizes(self) -> tuple[int, ...]:
        return self._sizes

    def subset(self, rows: Sequence[np.ndarray], *, transform: Transform | None = None) -> BlockRows:
        """The same blocks restricted to ``rows[k]`` of each (positions in this view's block k)."""
        return BlockRows(self.loader, [self.rows[k][r] for k, r in enumerate(rows)],
                         transform=transform if transform is not None else self.transform, cache=self.cache)

    def raw_blocks(self) -> Iterator[np.ndarray]:
        """Each block's inputs as numpy, untransformed, one at a time (to fit the scaler)."""
        for k, rows in enumerate(self.rows):
            yield self.loader(k)[0][rows]

    def _block(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        if k in self._held:
            self._held.move_to_end(k)
            return self._held[k]
        inputs, targets = self.loader(k)
        inputs, targets = inputs[self.rows[k]], targets[self.rows[k]]
        if self.transform is not None:
            inputs = self.transform(inputs)
        self._held[k] = (torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(np.ascontiguousarray(targets)))
        while len(self._held) > self.cache:
            self._held.popitem(last=False)
        return self._held[k]

    def take(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = np.asarray(index)
        if not len(index):
            X, t = self._block(0)
            return X[:0], t[:0]
        block = np.searchsorted(self._offsets, index, side="right") - 1
        cuts = np.flatnonzero(np.diff(block)) + 1  # runs within one block: one or two in block-local order
        inputs, targets = [], []
        for run in np.split(np.arange(len(index)), cuts):
            k = int(block[run[0]])
            X, t = self._block(k)
            local = torch.from_numpy(index[run] - self._offsets[k])
            inputs.append(X[local])
            targets.append(t[local])
        if len(inputs) == 1:
            return inputs[0], targets[0]
        return torch.cat(inputs), torch.cat(targets)

    def blocks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for k in range(len(self._sizes)):
            yield self._block(k)
