"""The label stage's core: teacher top-k log-probabilities per token, streamed to Parquet.

**Layout.** A soft-label folder holds ``softlabels.json`` (meta: k, V, block length, dtype,
counts, and each shard's rows, tokens and sha256) and shards
``softlabels-00000.parquet``, ... with **one row per token block** (a training sequence)
and list columns, because the student consumes whole blocks:

=================  ==================  ==========================================
column             type                content (n = real tokens in the block)
=================  ==================  ==========================================
``block``          int64               0-based index of the block in input order
``input_ids``      list<uint16|32>     the n token ids
``topk_ids``       list<uint16|32>     n·k teacher top-k ids, position-major, sorted
                                       and delta-coded per position
``topk_logprobs``  list<uint8>         n·k log-probabilities at T=1, same order,
                                       quantized (or float16/32 values)
``leftover``       list<float32>       n values ``log(1 − Σ_topk p)`` (−inf if k=V)
``logprob_top``,   list<float16>       n values each: the quantization's top and
``logprob_step``                       step per position (quantized stores only)
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

**Size.** The bytes of each column (uint16 sorted, delta-coded ids; log-probabilities
quantized to ``logprob_bits`` bits; zstd) are chosen in
:mod:`distillguard.lm.softlabel_codec`, which also reads the first layout (int32 ids in
rank order, float16 log-probabilities: ``schema_version`` 1 in the meta). At k = 128 on the
LM benchmark's teacher (V = 2048): 144 B per token at 4 bits, 393 in the first layout
(``benchmarks/bench_lm_softlabel_encoding.py``, table and student perplexities in
``docs/results/lm-benchmarks.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from distillguard import distributed
from distillguard.lm import softlabel_codec as codec
from distillguard.lm.blocks import batch_with_mask
from distillguard.lm.losses import sparse_from_logits
from distillguard.lm.models import context_length
from distillguard.runs import atomic_write_json, sha256_file

if TYPE_CHECKING:
    import pyarrow as pa
    from transformers import PreTrainedModel

META = "softlabels.json"
FORMAT = "distillguard-lm-softlabels"


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
    ids, mask = batch_with_mask(blocks)
    device = teacher.device
    logits = teacher(input_ids=ids.to(device), attention_mask=mask.long().to(device)).logits  # (B, L, V)
    topk_ids, topk_logprobs, leftover = sparse_from_logits(logits, k=k)  # (B, L, k), (B, L, k), (B, L)
    return {"ids": ids, "mask": mask, "topk_ids": topk_ids.cpu(), "topk_logprobs": topk_logprobs.cpu(),
            "leftover": leftover.cpu()}


def _batch_table(labels: Mapping[str, torch.Tensor], *, first_block: int, k: int, vocab_size: int,
                 logprob_bits: int = codec.DEFAULT_LOGPROB_BITS, schema_version: int = codec.SCHEMA_VERSION) -> pa.Table:
    """One batch of labels as a row group of the store's layout (one row per block)."""
    import pyarrow as pa

    schema = codec.schema(schema_version=schema_version, vocab_size=vocab_size, logprob_bits=logprob_bits)
    mask = labels["mask"]
    lengths = mask.sum(dim=1).numpy()  # (B,)
    real = mask.numpy()
    rows = {"input_ids": labels["ids"].numpy()[real],  # (N,)
            "topk_ids": labels["topk_ids"].numpy()[real],  # (N, k)
            "topk_logprobs": labels["topk_logprobs"].clamp_min(-6.0e4).numpy()[real].astype(np.float32),  # (N, k)
            "leftover": labels["leftover"].numpy()[real].astype(np.float32)}  # (N,)
    if schema_version == 1:
        values = {"topk_ids": rows["topk_ids"].reshape(-1), "leftover": rows["leftover"],
                  "topk_logprobs": rows["topk_logprobs"].reshape(-1).astype(f"float{logprob_bits}")}
    else:
        values = codec.encode_labels(rows, k=k, logprob_bits=logprob_bits)
    values["input_ids"] = rows["input_ids"]
    per_position = {"topk_ids": k, "topk_logprobs": k}
    columns = [pa.array(np.arange(first_block, first_block + len(lengths), dtype=np.int64))]
    for field in list(schema)[1:]:
        columns.append(_list_column(values[field.name].astype(field.type.value_type.to_pandas_dtype()),
                                    lengths * per_position.get(field.name, 1), field.type.value_type))
    return pa.Table.from_arrays(columns, schema=schema)


def write_soft_labels(
    teacher: PreTrainedModel,
    blocks: Iterable[Sequence[int]],
    *,
    folder: str | Path,
    k: int,
    batch_size: int = 16,
    rows_per_shard: int = 4096,
    logprob_bits: int = codec.DEFAULT_LOGPROB_BITS,
    schema_version: int = codec.SCHEMA_VERSION,
    extra_meta: Mapping[str, Any] | None = None,
    labeller: Callable[..., dict[str, torch.Tensor]] | None = None,
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
        logprob_bits: 2–8: log-probabilities quantized to that many bits per value
            (default 4; :mod:`distillguard.lm.softlabel_codec`); 16 or 32: float16 /
            float32 values.
        schema_version: 2 (default, the compact layout) or 1 (the first layout: int32
            ids, ``logprob_bits`` 16 or 32), kept for comparisons and tests.
        extra_meta: JSON-able facts to record (teacher hash, tokenizer hash, ...).
        labeller: ``labeller(batch, k=k)`` → :func:`label_batch`'s dict (private prediction).

    Returns:
        The meta dict, also written to ``folder/softlabels.json``.
    """
    vocab = _checked_vocab(teacher, k=k, batch_size=batch_size, rows_per_shard=rows_per_shard)
    codec.check_format(schema_version=schema_version, logprob_bits=logprob_bits)
    layout = {"schema_version": schema_version, "vocab_size": vocab, "logprob_bits": logprob_bits}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    teacher.eval()
    shards = _ShardWriter(folder, rows_per_shard=rows_per_shard, layout=layout)
    block_len = n_blocks = n_tokens = 0
    context = context_length(teacher)
    try:
        label = labeller or (lambda batch, k: label_batch(teacher, batch, k=k))  # noqa: E731
        for batch, labels in _labelled_batches(label, _batches(blocks, batch_size), k=k, context=context):
            tokens = sum(len(b) for b in batch)
            shards.write(_batch_table(labels, first_block=n_blocks, k=k, **layout), rows=len(batch), tokens=tokens)
            n_blocks, n_tokens = n_blocks + len(batch), n_tokens + tokens
            block_len = max(block_len, max(map(len, batch)))
    finally:
        shards.close()
    if n_blocks == 0:
        raise ValueError("write_soft_labels got no token blocks; is the transfer text empty?")
    meta = _store_meta(layout, k=k, block_len=block_len, counts=(n_blocks, n_tokens), shards=shards.shards,
                       extra_meta=extra_meta)
    atomic_write_json(folder / META, meta)
    return meta


def _store_meta(layout: Mapping[str, int], *, k: int, block_len: int, counts: tuple[int, int],
                shards: list[dict[str, Any]], extra_meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The contents of ``softlabels.json``: the layout, the sizes, the shards, then ``extra_meta``."""
    version = layout["schema_version"]
    meta = {"format": FORMAT, **layout, "k": k, "block_len": block_len, "temperature": 1.0,
            "id_dtype": "int32" if version == 1 else codec.id_dtype(layout["vocab_size"]),
            **codec.writer_options(schema_version=version, logprob_bits=layout["logprob_bits"]),
            "n_blocks": counts[0], "n_tokens": counts[1], "shards": shards}
    clash = sorted(set(meta) & set(extra_meta or {}))
    if clash:
        raise ValueError(f"extra_meta may not override the soft-label meta keys {clash}")
    return {**meta, **(extra_meta or {})}


def _checked_vocab(teacher: PreTrainedModel, *, k: int, batch_size: int, rows_per_shard: int) -> int:
    """The teacher's vocabulary size, once the writer's parameters are checked against it."""
    vocab = int(teacher.get_output_embeddings().weight.shape[0])
    if not 1 <= k <= vocab:
        raise ValueError(f"The 'k' parameter of write_soft_labels must be in [1, {vocab}]. Got {k!r} instead.")
    if batch_size < 1 or rows_per_shard < batch_size:
        raise ValueError("batch_size must be >= 1 and rows_per_shard >= batch_size. "
                         f"Got {batch_size!r}, {rows_per_shard!r} instead.")
    return vocab


class _ShardWriter:
    """Row groups into ``softlabels-NNNNN.parquet`` shards; a shard closes (and is hashed) once full.

    ``shards`` is the meta's list: file, rows (blocks), tokens and, once closed, sha256.
    """

    def __init__(self, folder: Path, *, rows_per_shard: int, layout: Mapping[str, int]) -> None:
        self.folder, self.rows_per_shard, self.layout = folder, rows_per_shard, dict(layout)
        self.shards: list[dict[str, Any]] = []
        self.writer = None

    def write(self, table, *, rows: int, tokens: int) -> None:
        """Append one batch's row group, opening a new shard when the current one is full."""
        import pyarrow.parquet as pq

        if self.writer is None or self.shards[-1]["rows"] >= self.rows_per_shard:
            self.close()
            self.shards.append({"file": f"softlabels-{len(self.shards):05d}.parquet", "rows": 0, "tokens": 0})
            options = codec.writer_options(schema_version=self.layout["schema_version"],
                                           logprob_bits=self.layout["logprob_bits"])
            self.writer = pq.ParquetWriter(self.folder / self.shards[-1]["file"], codec.schema(**self.layout), **options)
        self.writer.write_table(table)
        self.shards[-1]["rows"] += rows
        self.shards[-1]["tokens"] += tokens

    def close(self) -> None:
        """Close the open shard, if any, and record its hash."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.shards[-1]["sha256"] = sha256_file(self.folder / self.shards[-1]["file"])


def _labelled_batches(label: Callable[..., dict[str, torch.Tensor]], batches: Iterable[list[Sequence[int]]], *,
                      k: int, context: int) -> Iterator[tuple[list[Sequence[int]], dict[str, torch.Tensor]]]:
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
            yield batch, label(batch, k=k)
            continue
        round_.append(batch)
        if len(round_) == here.size:
            yield from _label_round(label, round_, k=k)
            round_ = []
    if here.size > 1:
        yield from _label_round(label, round_, k=k)  # every rank joins the last gather, even with nothing left


def _label_round(label: Callable[..., dict[str, torch.Tensor]], round_: list[list[Sequence[int]]], *, k: int
                 ) -> Iterator[tuple[list[Sequence[int]], dict[str, torch.Tensor]]]:
    here = distributed.world()
    mine = label(round_[here.rank], k=k) if here.rank < len(round_) else None
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
