"""The label stage's core: teacher top-k log-probabilities per token, streamed to Parquet.

**Layout.** A soft-label folder holds ``softlabels.json`` (meta: k, V, block length, dtype,
counts, and each shard's rows, tokens and sha256) and shards
``softlabels-00000.parquet``, ... with **one row per token block** (a training sequence)
and list columns, because the student consumes whole blocks:

=================  ==================  ==========================================
column             type                content (n = real tokens in the block)
=================  ==================  ==========================================
``block``          int64               0-based index of the block in input order
``input_ids``      list<int32>         the n token ids
``topk_ids``       list<int32>         n·k teacher top-k ids, position-major
``topk_logprobs``  list<float16|32>    n·k log-probabilities at T=1, same order
``leftover``       list<float32>       n values ``log(1 − Σ_topk p)`` (−inf if k=V)
=================  ==================  ==========================================

Position t holds the teacher's distribution of token t+1 given tokens ≤ t, the same
alignment as the student's logits at t, so the KD loss needs no shift and uses every
position (the last one included). Stored at T=1; the temperature is applied when the
student loads them (:mod:`distillguard.lm.losses`).

**Streaming.** :func:`write_soft_labels` pulls blocks lazily, labels ``batch_size`` of them,
appends one Parquet row group and rolls to a new shard every ``rows_per_shard`` rows, so
peak memory is one batch's (B, L, V) logits, whatever the corpus length.
:class:`SoftLabelReader` reads row groups one window at a time, shuffled by seed.

**Size**, measured (bytes on disk per token position, all columns, zstd), on a
2-layer d=64 GPT-2 teacher with the default 2048-token BPE, labeling 124 blocks (15,853
tokens) of the built-in transfer text; the full-vocabulary baseline stores every
log-probability without ids, same codec:

=================  =======  =======  =======  =================
logprob dtype      k=8      k=32     k=128    full (V = 2048)
=================  =======  =======  =======  =================
float16 (default)  29       93       349      3208
float32            57       216      878      7171
=================  =======  =======  =======  =================

(``tests/lm/test_lm_softlabels.py::test_bytes_per_token`` repeats this at V=512 and prints
it: 32 / 89 / 342 vs 736 for the full float16 vocabulary.) k=128 in float16 matches
DistillKit's ~300 B/token. float16 log-probabilities (the default) hold about 3 significant
digits; on the same data the sparse forward KL from float16 labels differs from float32
labels by ~1e-6 relative at T = 1, 2 and 4, for 2–2.5× fewer bytes (float32 mantissas
barely compress). The leftover column is always float32 (one value per position).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from distillguard import distributed
from distillguard.errors import ArtifactError
from distillguard.lm.losses import sparse_from_logits
from distillguard.lm.models import context_length
from distillguard.runs import atomic_write_json, read_json, sha256_file

if TYPE_CHECKING:
    import pyarrow as pa
    from transformers import PreTrainedModel

META = "softlabels.json"
FORMAT = "distillguard-lm-softlabels"
_DTYPES = ("float16", "float32")


def _schema(logprob_dtype: str) -> pa.Schema:
    import pyarrow as pa

    value = pa.float16() if logprob_dtype == "float16" else pa.float32()
    return pa.schema([("block", pa.int64()), ("input_ids", pa.list_(pa.int32())), ("topk_ids", pa.list_(pa.int32())),
                      ("topk_logprobs", pa.list_(value)), ("leftover", pa.list_(pa.float32()))])


def _list_column(values: np.ndarray, lengths: np.ndarray, value_type: pa.DataType) -> pa.Array:
    import pyarrow as pa

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, value_type))


@torch.no_grad()
def label_batch(teacher: PreTrainedModel, blocks: Sequence[Sequence[int]], *, k: int) -> dict[str, torch.Tensor]:
    """Run the teacher on one batch of blocks; top-k per real position.

    The forward pass runs on the teacher's device; the results come back on the CPU.

    Returns:
        ``ids`` (B, L) int64 (right-padded), ``mask`` (B, L) bool, ``topk_ids`` (B, L, k),
        ``topk_logprobs`` (B, L, k) float32, ``leftover`` (B, L) float32.
    """
    length = max(len(b) for b in blocks)
    ids = torch.zeros((len(blocks), length), dtype=torch.int64)
    mask = torch.zeros((len(blocks), length), dtype=torch.bool)
    for row, block in enumerate(blocks):
        ids[row, : len(block)] = torch.as_tensor(block, dtype=torch.int64)
        mask[row, : len(block)] = True
    device = teacher.device
    logits = teacher(input_ids=ids.to(device), attention_mask=mask.long().to(device)).logits  # (B, L, V)
    topk_ids, topk_logprobs, leftover = sparse_from_logits(logits, k=k)  # (B, L, k), (B, L, k), (B, L)
    return {"ids": ids, "mask": mask, "topk_ids": topk_ids.cpu(), "topk_logprobs": topk_logprobs.cpu(),
            "leftover": leftover.cpu()}


def _batch_table(labels: Mapping[str, torch.Tensor], *, first_block: int, k: int, logprob_dtype: str) -> pa.Table:
    import pyarrow as pa

    schema = _schema(logprob_dtype)
    mask = labels["mask"]
    lengths = mask.sum(dim=1).numpy()  # (B,)
    real = mask.numpy()
    columns = [
        pa.array(np.arange(first_block, first_block + len(lengths), dtype=np.int64)),
        _list_column(labels["ids"].numpy()[real].astype(np.int32), lengths, pa.int32()),
        _list_column(labels["topk_ids"].numpy()[real].reshape(-1).astype(np.int32), lengths * k, pa.int32()),
        _list_column(labels["topk_logprobs"].clamp_min(-6.0e4).numpy()[real].reshape(-1).astype(logprob_dtype),
                     lengths * k, schema.field("topk_logprobs").type.value_type),
        _list_column(labels["leftover"].numpy()[real].astype(np.float32), lengths, pa.float32()),
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def write_soft_labels(
    teacher: PreTrainedModel,
    blocks: Iterable[Sequence[int]],
    *,
    folder: str | Path,
    k: int,
    batch_size: int = 16,
    rows_per_shard: int = 4096,
    logprob_dtype: str = "float16",
    compression: str = "zstd",
    extra_meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Label token blocks with the teacher and stream them to Parquet shards in ``folder``.

    Args:
        teacher: causal LM, run in eval mode under ``no_grad``.
        blocks: token-id lists, each no longer than the teacher's context (e.g.
            :func:`distillguard.lm.blocks.iter_token_blocks` over the transfer text);
            consumed lazily.
        folder: output folder (created); the pipeline wraps it in ``staged_dir``.
        k: top-k per position, 1 ≤ k ≤ V (k = V stores the full distribution).
        batch_size: blocks per teacher forward pass = rows per Parquet row group.
        rows_per_shard: a shard is closed (and hashed) once it holds at least this many
            blocks; the next batch opens a new one.
        logprob_dtype: ``"float16"`` (default; see the module docstring) or ``"float32"``.
        extra_meta: JSON-able facts to record (teacher hash, tokenizer hash, ...).

    Returns:
        The meta dict, also written to ``folder/softlabels.json``.
    """
    import pyarrow.parquet as pq

    vocab = int(teacher.get_output_embeddings().weight.shape[0])
    if not 1 <= k <= vocab:
        raise ValueError(f"The 'k' parameter of write_soft_labels must be in [1, {vocab}]. Got {k!r} instead.")
    if logprob_dtype not in _DTYPES:
        raise ValueError(f"The 'logprob_dtype' parameter must be one of {list(_DTYPES)}. "
                         f"Got {logprob_dtype!r} instead.")
    if batch_size < 1 or rows_per_shard < batch_size:
        raise ValueError("batch_size must be >= 1 and rows_per_shard >= batch_size. "
                         f"Got {batch_size!r}, {rows_per_shard!r} instead.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    teacher.eval()
    shards: list[dict[str, Any]] = []
    writer: pq.ParquetWriter | None = None
    block_len = n_blocks = n_tokens = 0

    def close() -> None:
        nonlocal writer
        if writer is not None:
            writer.close()
            writer = None
            shards[-1]["sha256"] = sha256_file(folder / shards[-1]["file"])

    context = context_length(teacher)
    try:
        for batch, labels in _labelled_batches(teacher, _batches(blocks, batch_size), k=k, context=context):
            longest = max(map(len, batch))
            if writer is None or shards[-1]["rows"] >= rows_per_shard:
                close()
                shards.append({"file": f"softlabels-{len(shards):05d}.parquet", "rows": 0, "tokens": 0})
                writer = pq.ParquetWriter(folder / shards[-1]["file"], _schema(logprob_dtype),
                                          compression=compression)
            writer.write_table(_batch_table(labels, first_block=n_blocks, k=k, logprob_dtype=logprob_dtype))
            tokens = sum(len(b) for b in batch)
            shards[-1]["rows"] += len(batch)
            shards[-1]["tokens"] += tokens
            n_blocks, n_tokens = n_blocks + len(batch), n_tokens + tokens
            block_len = max(block_len, longest)
    finally:
        close()
    if n_blocks == 0:
        raise ValueError("write_soft_labels got no token blocks; is the transfer text empty?")
    meta = {"format": FORMAT, "schema_version": 1, "k": k, "vocab_size": vocab, "block_len": block_len,
            "temperature": 1.0, "logprob_dtype": logprob_dtype, "compression": compression,
            "n_blocks": n_blocks, "n_tokens": n_tokens, "shards": shards}
    clash = sorted(set(meta) & set(extra_meta or {}))
    if clash:
        raise ValueError(f"extra_meta may not override the soft-label meta keys {clash}")
    meta.update(extra_meta or {})
    atomic_write_json(folder / META, meta)
    return meta


def _labelled_batches(teacher: PreTrainedModel, batches: Iterable[list[Sequence[int]]], *, k: int, context: int
                      ) -> Iterator[tuple[list[Sequence[int]], dict[str, torch.Tensor]]]:
    """(batch, its labels) in order. Under torchrun the ranks take turns, batch by batch.

    Rank r labels batches r, r + N, … of each round of N; the round's labels are gathered
    on every rank, so every rank yields them all, in order, and writes the same shards (rank
    0 into the run folder, the others into scratch). Labelling a batch is deterministic, so
    the shards equal a single process's.
    """
    here = distributed.world()
    round_: list[list[Sequence[int]]] = []
    for batch in batches:
        longest = max(map(len, batch))
        if longest > context:
            raise ValueError(f"a block of {longest} tokens exceeds the teacher's context of {context}; "
                             "use block_len <= n_positions")
        if here.size == 1:
            yield batch, label_batch(teacher, batch, k=k)
            continue
        round_.append(batch)
        if len(round_) == here.size:
            yield from _label_round(teacher, round_, k=k)
            round_ = []
    if here.size > 1:
        yield from _label_round(teacher, round_, k=k)  # every rank joins the last gather, even with nothing left


def _label_round(teacher: PreTrainedModel, round_: list[list[Sequence[int]]], *, k: int
                 ) -> Iterator[tuple[list[Sequence[int]], dict[str, torch.Tensor]]]:
    here = distributed.world()
    mine = label_batch(teacher, round_[here.rank], k=k) if here.rank < len(round_) else None
    labels = distributed.gather({name: t.cpu() for name, t in mine.items()} if mine is not None else None)
    for batch, labelled in zip(round_, labels):
        yield batch, labelled


def _batches(blocks: Iterable[Sequence[int]], size: int) -> Iterator[list[Sequence[int]]]:
    batch: list[Sequence[int]] = []
    for block in blocks:
        if len(block) == 0:
            continue
        batch.append(block)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


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
        folder: written by :func:`write_soft_labels`.
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

