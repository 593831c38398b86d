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
:class:`~distillguard.lm.softlabel_reader.SoftLabelReader` reads row groups one window at a
time, shuffled by seed.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from distillguard import distributed
from distillguard.lm.losses import sparse_from_logits
from distillguard.lm.models import context_length
from distillguard.runs import atomic_write_json, sha256_file

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
    vocab = _checked_vocab(teacher, k=k, logprob_dtype=logprob_dtype, batch_size=batch_size,
                           rows_per_shard=rows_per_shard)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    teacher.eval()
    shards = _ShardWriter(folder, rows_per_shard=rows_per_shard, logprob_dtype=logprob_dtype, compression=compression)
    block_len = n_blocks = n_tokens = 0
    context = context_length(teacher)
    try:
        for batch, labels in _labelled_batches(teacher, _batches(blocks, batch_size), k=k, context=context):
            longest = max(map(len, batch))
            tokens = sum(len(b) for b in batch)
            shards.write(_batch_table(labels, first_block=n_blocks, k=k, logprob_dtype=logprob_dtype),
                         rows=len(batch), tokens=tokens)
            n_blocks, n_tokens = n_blocks + len(batch), n_tokens + tokens
            block_len = max(block_len, longest)
    finally:
        shards.close()
    if n_blocks == 0:
        raise ValueError("write_soft_labels got no token blocks; is the transfer text empty?")
    meta = {"format": FORMAT, "schema_version": 1, "k": k, "vocab_size": vocab, "block_len": block_len,
            "temperature": 1.0, "logprob_dtype": logprob_dtype, "compression": compression,
            "n_blocks": n_blocks, "n_tokens": n_tokens, "shards": shards.shards}
    clash = sorted(set(meta) & set(extra_meta or {}))
    if clash:
        raise ValueError(f"extra_meta may not override the soft-label meta keys {clash}")
    meta.update(extra_meta or {})
    atomic_write_json(folder / META, meta)
    return meta


def _checked_vocab(teacher: PreTrainedModel, *, k: int, logprob_dtype: str, batch_size: int,
                   rows_per_shard: int) -> int:
    """The teacher's vocabulary size, once the writer's parameters are checked against it."""
    vocab = int(teacher.get_output_embeddings().weight.shape[0])
    if not 1 <= k <= vocab:
        raise ValueError(f"The 'k' parameter of write_soft_labels must be in [1, {vocab}]. Got {k!r} instead.")
    if logprob_dtype not in _DTYPES:
        raise ValueError(f"The 'logprob_dtype' parameter must be one of {list(_DTYPES)}. "
                         f"Got {logprob_dtype!r} instead.")
    if batch_size < 1 or rows_per_shard < batch_size:
        raise ValueError("batch_size must be >= 1 and rows_per_shard >= batch_size. "
                         f"Got {batch_size!r}, {rows_per_shard!r} instead.")
    return vocab


class _ShardWriter:
    """Row groups into ``softlabels-NNNNN.parquet`` shards; a shard closes (and is hashed) once full.

    ``shards`` is the meta's list: file, rows (blocks), tokens and, once closed, sha256.
    """

    def __init__(self, folder: Path, *, rows_per_shard: int, logprob_dtype: str, compression: str) -> None:
        self.folder, self.rows_per_shard = folder, rows_per_shard
        self.logprob_dtype, self.compression = logprob_dtype, compression
        self.shards: list[dict[str, Any]] = []
        self.writer = None

    def write(self, table, *, rows: int, tokens: int) -> None:
        """Append one batch's row group, opening a new shard when the current one is full."""
        import pyarrow.parquet as pq

        if self.writer is None or self.shards[-1]["rows"] >= self.rows_per_shard:
            self.close()
            self.shards.append({"file": f"softlabels-{len(self.shards):05d}.parquet", "rows": 0, "tokens": 0})
            self.writer = pq.ParquetWriter(self.folder / self.shards[-1]["file"], _schema(self.logprob_dtype),
                                           compression=self.compression)
        self.writer.write_table(table)
        self.shards[-1]["rows"] += rows
        self.shards[-1]["tokens"] += tokens

    def close(self) -> None:
        """Close the open shard, if any, and record its hash."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.shards[-1]["sha256"] = sha256_file(self.folder / self.shards[-1]["file"])


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
