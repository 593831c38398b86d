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
from distillguard.lm import softlabel_codec as codec
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
        topk_logprobs: (B, L, k) float32 log p at T=1 (a quantized store's values,
            renormalised so that the head and the leftover hold mass 1).
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
        version = self.meta.get("schema_version", 1)
        if version not in (1, codec.SCHEMA_VERSION):
            raise ArtifactError(f"{self.folder / META}: schema_version {version!r} is not one this distillguard reads "
                                f"(1 or {codec.SCHEMA_VERSION}); upgrade distillguard or rerun the label stage")
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

        with self._naming_the_file(self.meta["shards"][0]["file"]) as named:
            groups = []
            for shard in self.meta["shards"]:
                named.file = shard["file"]
                count = pq.read_metadata(self.folder / shard["file"]).num_row_groups
                groups += [(shard["file"], group) for group in range(count)]
        return groups

    def _read_row_group(self, name: str, group: int) -> pa.Table:
        import pyarrow.parquet as pq

        with self._naming_the_file(name), pq.ParquetFile(self.folder / name) as shard:  # one open file at a time
            return shard.read_row_group(group)

    def _naming_the_file(self, name: str) -> _NamingTheFile:
        return _NamingTheFile(self.folder, name)

    def _files_of(self, blocks: np.ndarray) -> str:
        """The shard file(s) holding ``blocks`` (shards hold consecutive blocks, in order)."""
        ends = np.cumsum([s["rows"] for s in self.meta["shards"]])
        files = sorted({self.meta["shards"][min(int(i), len(ends) - 1)]["file"]
                        for i in np.searchsorted(ends, blocks, side="right")})
        return ", ".join(str(self.folder / f) for f in files)

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
            window.append(self._read_row_group(name, group))
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
        block = table.column("block").to_numpy().astype(np.int64)  # (B,)
        lengths = pc.list_value_length(table.column("input_ids")).to_numpy().astype(np.int64)  # (B,)
        length = int(lengths.max())
        mask = torch.from_numpy(np.arange(length)[None, :] < lengths[:, None])  # (B, L)
        input_ids = torch.zeros(mask.shape, dtype=torch.int64)
        topk_ids = torch.zeros((*mask.shape, k), dtype=torch.int64)
        topk_logprobs = torch.zeros((*mask.shape, k), dtype=torch.float32)
        leftover = torch.zeros(mask.shape, dtype=torch.float32)

        def flat(name: str) -> np.ndarray:
            return table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)

        flats = {name: flat(name) for name in table.column_names if name != "block"}
        if flats["leftover"].size != int(lengths.sum()):
            raise ArtifactError(f"{self._files_of(block)}: {flats['leftover'].size} leftover values for "
                                f"{int(lengths.sum())} tokens; the shard is corrupted, rerun the label stage")
        ids, logprobs = codec.decode_labels(flats, meta=self.meta, path=self._files_of(block))  # (N, k), (N, k)
        input_ids[mask] = torch.from_numpy(flats["input_ids"].astype(np.int64))
        topk_ids[mask] = torch.from_numpy(ids)
        leftover[mask] = torch.from_numpy(flats["leftover"].astype(np.float32))
        head = torch.from_numpy(logprobs)
        if self.meta.get("schema_version", 1) >= 2 and self.meta.get("logprob_bits", 16) <= 8:
            head = codec.renormalise_head(head, leftover[mask])
        topk_logprobs[mask] = head
        return SoftLabelBatch(torch.from_numpy(block), input_ids, mask, topk_ids, topk_logprobs, leftover)


class _NamingTheFile:
    """Turns pyarrow's read errors into one-line ArtifactErrors naming the shard file being read."""

    def __init__(self, folder: Path, file: str) -> None:
        self.folder, self.file = folder, file

    def __enter__(self) -> _NamingTheFile:
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        import pyarrow as pa

        unreadable = isinstance(error, (pa.ArrowException, OSError)) and not isinstance(error, ArtifactError)
        if unreadable:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ArtifactError(f"{self.folder / self.file}: unreadable Parquet shard ({first}); "
                                "rerun the label stage") from error
        return False
