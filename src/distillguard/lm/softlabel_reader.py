"""Reading the LM soft-label store: student batches streamed from the label stage's shards.

The layout, and why it is what it is, is in :mod:`distillguard.lm.softlabels`, beside
the writer; the distillation loop (:mod:`distillguard.lm.train`) reads through this
module only, one window of row groups at a time, so memory does not grow with the corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from distillguard.errors import ArtifactError
from distillguard.lm.softlabels import FORMAT, META
from distillguard.runs import read_json, sha256_file

if TYPE_CHECKING:
    import pyarrow as pa


def bytes_per_token(folder: str | Path) -> float:
    """Shard bytes on disk per stored token position (all columns, the meta file excluded)."""
    meta = read_json(Path(folder) / META)
    return sum((Path(folder) / s["file"]).stat().st_size for s in meta["shards"]) / meta["n_tokens"]


@dataclass(frozen=True)
class SoftLabelBatch:
    """One student batch of blocks with their teacher labels (padding masked).

    Attributes:
        block: (B,) int64 block indices.
        input_ids: (B, L) int64, right-padded with 0.
        mask: (B, L) bool, True at real positions.
        topk_ids: (B, L, k) int64.
        topk_logprobs: (B, L, k) float32 log p at T=1.
        leftover: (B, L) float32 ``log(1 − Σ_topk p)``.
    """

    block: torch.Tensor
    input_ids: torch.Tensor
    mask: torch.Tensor
    topk_ids: torch.Tensor
    topk_logprobs: torch.Tensor
    leftover: torch.Tensor

    def to(self, device: torch.device | str) -> SoftLabelBatch:
        """The same batch on ``device`` (the student's)."""
        return SoftLabelBatch(*(t.to(device) for t in (self.block, self.input_ids, self.mask, self.topk_ids,
                                                         self.topk_logprobs, self.leftover)))


class SoftLabelReader:
    """Streams a soft-label folder as student batches, without loading it whole.

    Args:
        folder: written by :func:`~distillguard.lm.softlabels.write_soft_labels`.
        verify: check each shard's sha256 against the meta (ArtifactError on mismatch).
    """

    def __init__(self, folder: str | Path, *, verify: bool = True) -> None:
        self.folder = Path(folder)
        self.meta = read_json(self.folder / META)
        if self.meta.get("format") != FORMAT:
            raise ArtifactError(f"{self.folder / META}: not a distillguard LM soft-label meta file "
                                f"(format {self.meta.get('format')!r}, expected {FORMAT!r})")
        for shard in self.meta["shards"]:
            path = self.folder / shard["file"]
            if not path.is_file():
                raise ArtifactError(f"{path}: missing; rerun the label stage")
            if verify and sha256_file(path) != shard["sha256"]:
                raise ArtifactError(f"{path}: sha256 does not match {META} (file corrupted or tampered with); "
                                    "rerun the label stage")

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    def __len__(self) -> int:
        return int(self.meta["n_blocks"])

    def _row_groups(self) -> list[tuple[str, int]]:
        import pyarrow.parquet as pq

        return [(shard["file"], group) for shard in self.meta["shards"]
                for group in range(pq.read_metadata(self.folder / shard["file"]).num_row_groups)]

    def batches(
        self, *, batch_size: int, seed: int | None = None, shuffle_rows: int = 1024
    ) -> Iterator[SoftLabelBatch]:
        """Yield batches of ``batch_size`` blocks (the last one may be smaller).

        Args:
            batch_size: blocks per batch.
            seed: None = file order; else row groups in a seeded random order, and rows
                shuffled within windows of about ``shuffle_rows`` rows (a shuffle buffer:
                memory stays one window, whatever the corpus size).
            shuffle_rows: window size in rows when shuffling.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups = self._row_groups()
        rng = np.random.default_rng(seed) if seed is not None else None
        if rng is not None:
            groups = [groups[i] for i in rng.permutation(len(groups))]
        window: list[pa.Table] = []
        carry: pa.Table | None = None
        for index, (name, group) in enumerate(groups):
            with pq.ParquetFile(self.folder / name) as shard:  # one open file at a time
                window.append(shard.read_row_group(group))
            if sum(t.num_rows for t in window) < shuffle_rows and index + 1 < len(groups):
                continue
            table = pa.concat_tables(([carry] if carry is not None else []) + window)
            window = []
            if rng is not None:
                table = table.take(pa.array(rng.permutation(table.num_rows)))
            last = index + 1 == len(groups)
            full = table.num_rows if last else table.num_rows - table.num_rows % batch_size
            for start in range(0, full, batch_size):
                yield self._to_batch(table.slice(start, min(batch_size, full - start)))
            carry = table.slice(full) if full < table.num_rows else None

    def _to_batch(self, table: pa.Table) -> SoftLabelBatch:
        import pyarrow.compute as pc

        k = self.k
        lengths = pc.list_value_length(table.column("input_ids")).to_numpy().astype(np.int64)  # (B,)
        length = int(lengths.max())
        mask = torch.from_numpy(np.arange(length)[None, :] < lengths[:, None])  # (B, L)
        input_ids = torch.zeros(mask.shape, dtype=torch.int64)
        topk_ids = torch.zeros((*mask.shape, k), dtype=torch.int64)
        topk_logprobs = torch.zeros((*mask.shape, k), dtype=torch.float32)
        leftover = torch.zeros(mask.shape, dtype=torch.float32)

        def flat(name: str) -> np.ndarray:
            return table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)

        input_ids[mask] = torch.from_numpy(flat("input_ids").astype(np.int64))
        topk_ids[mask] = torch.from_numpy(flat("topk_ids").astype(np.int64).reshape(-1, k))
        topk_logprobs[mask] = torch.from_numpy(flat("topk_logprobs").astype(np.float32).reshape(-1, k))
        leftover[mask] = torch.from_numpy(flat("leftover").astype(np.float32))
        block = torch.from_numpy(table.column("block").to_numpy().astype(np.int64))
        return SoftLabelBatch(block, input_ids, mask, topk_ids, topk_logprobs, leftover)

