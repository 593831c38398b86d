"""The bytes of the LM soft-label store: how one batch of top-k labels becomes a Parquet row group, and back.

Two layouts, told apart by ``schema_version`` in ``softlabels.json``; the reader decodes
both, the writer writes version 2 unless asked for version 1.

**Version 1** (the first store, kept readable): int32 ids in rank order and float16 or
float32 log-probabilities.

**Version 2** (the default):

- ids as uint16 when the vocabulary fits (V ≤ 65,536), else uint32;
- each position's k ids **sorted and delta-coded** (the first id, then the gaps), stored
  with Parquet's BYTE_STREAM_SPLIT (the high bytes of small gaps are mostly zero and
  vanish under zstd);
- log-probabilities **quantized** to ``logprob_bits`` (default 4) bits per value on a
  log scale, per position: code ``q = round((top − ℓ) / step)`` with ``top`` ≥ the
  position's largest log-probability and ``step = (top − min) / (2^bits − 1)``, both
  float16 columns (one value per position). Every stored value is within ``step / 2``
  of the truth (no clipping: the range is the position's own). ``logprob_bits`` = 16 or
  32 stores float16 / float32 values instead, in the sorted-id order;
- the leftover ``log(1 − Σ_topk p)`` stays float32, exact, so the tail bucket of the KD
  target is not touched by the quantization. On reading, the dequantized head is
  shifted so that its mass is exactly ``1 − exp(leftover)``: the target stays normalised,
  at the cost of at most one more ``step / 2`` of error (at most ``step`` in all);
- zstd at level 9.

Bytes per token by column at k = 128 (Parquet's compressed column sizes; a 2-layer d = 64
GPT-2 teacher, V = 2048, 10 epochs on 100 kB of the built-in members, labelling 25,920
transfer tokens):

==========================  =====  =============  =========  ==============  =====
layout                      ids    log-probs      leftover   top, step       total
==========================  =====  =============  =========  ==============  =====
version 1, float16          174    203            4.9        -               385
version 2, float16          73     199            3.6        -               277
version 2, 5 bits           73     75             3.6        3.5             156
version 2, 4 bits           73     49             3.6        3.5             131
==========================  =====  =============  =========  ==============  =====

(input ids and block numbers add 1.7.) Choosing the layout by measurement: sorting the
ids without delta coding gives 141 B for the ids, the gaps with Parquet's dictionary
encoding 111, with DELTA_BINARY_PACKED 131, a per-position bitmap of the vocabulary 89,
the gaps with BYTE_STREAM_SPLIT 72-75. For the log-probabilities at 4 bits, the mean KL
from the true top-k + tail buckets to the stored ones is 0.0034 nats per position with
the per-position range (52 B with top and step), 0.020 with a fixed range of 16 nats below
the top (44 B), and 0.008 / 0.021 when quantizing ``(p / p_top)^(1/4)`` / ``^(1/2)``
instead (44 / 33 B). The student perplexity each setting gives is measured by
``benchmarks/bench_lm_softlabel_encoding.py`` (docs/results/lm-benchmarks.md).

The loss compares the teacher and the student on the teacher's ids through ``gather``, so
the order of the k ids within a position does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distillguard.config.softlabels import LM_LOGPROB_BITS
from distillguard.errors import ArtifactError

if TYPE_CHECKING:
    import pyarrow as pa
    import torch

SCHEMA_VERSION = 2
LOGPROB_BITS = LM_LOGPROB_BITS  # 2-8 quantized, 16 / 32 float values; the spec checks [softlabels] logprob_bits
DEFAULT_LOGPROB_BITS = 4
ZSTD_LEVEL = 9
UINT16_VOCAB = 1 << 16  # ids 0 … 65,535 fit in uint16


def id_dtype(vocab_size: int) -> str:
    """``"uint16"`` when every id of a ``vocab_size`` vocabulary fits, else ``"uint32"``."""
    return "uint16" if vocab_size <= UINT16_VOCAB else "uint32"


def check_format(*, schema_version: int, logprob_bits: int) -> None:
    """Validate the writer's format choice (sklearn-style messages)."""
    if schema_version not in (1, SCHEMA_VERSION):
        raise ValueError(f"The 'schema_version' parameter must be 1 or {SCHEMA_VERSION}. "
                         f"Got {schema_version!r} instead.")
    allowed = (16, 32) if schema_version == 1 else LOGPROB_BITS
    if logprob_bits not in allowed:
        raise ValueError(f"The 'logprob_bits' parameter must be one of {list(allowed)} (schema_version "
                         f"{schema_version}). Got {logprob_bits!r} instead.")


def schema(*, schema_version: int, vocab_size: int, logprob_bits: int) -> pa.Schema:
    """The Parquet schema of one store (one row per token block, list columns)."""
    import pyarrow as pa

    value = pa.uint8() if logprob_bits <= 8 else pa.float16() if logprob_bits == 16 else pa.float32()
    ids = pa.int32() if schema_version == 1 else pa.from_numpy_dtype(np.dtype(id_dtype(vocab_size)))
    fields = [("block", pa.int64()), ("input_ids", pa.list_(ids)), ("topk_ids", pa.list_(ids)),
              ("topk_logprobs", pa.list_(value)), ("leftover", pa.list_(pa.float32()))]
    if schema_version >= 2 and logprob_bits <= 8:
        fields += [("logprob_top", pa.list_(pa.float16())), ("logprob_step", pa.list_(pa.float16()))]
    return pa.schema(fields)


def writer_options(*, schema_version: int, logprob_bits: int) -> dict[str, Any]:
    """Keyword arguments of ``pyarrow.parquet.ParquetWriter`` for the layout (codec, encodings)."""
    if schema_version == 1:
        return {"compression": "zstd"}
    dictionary = ["topk_logprobs.list.element"] if logprob_bits <= 8 else []
    return {"compression": "zstd", "compression_level": ZSTD_LEVEL, "use_dictionary": dictionary,
            "column_encoding": {"topk_ids.list.element": "BYTE_STREAM_SPLIT"}}


def _float16_at_least(x: np.ndarray) -> np.ndarray:
    """float16 values ≥ ``x`` (the nearest float16, one step up where it rounded down)."""
    half = x.astype(np.float16)
    return np.where(half.astype(np.float32) < x, np.nextafter(half, np.float16(np.inf)), half)


def quantize_logprobs(logprobs: np.ndarray, *, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-position log-scale quantization of (N, k) log-probabilities (finite).

    Returns:
        codes (N, k) uint8 in [0, 2^bits − 1] (0 = the top), top (N,) float16 and step (N,)
        float16, with ``top − codes · step`` within ``step / 2`` of ``logprobs``.
    """
    levels = (1 << bits) - 1
    top = _float16_at_least(logprobs.max(axis=1))  # (N,)
    spread = top.astype(np.float32) - logprobs.min(axis=1)  # (N,)
    step = np.maximum(_float16_at_least(spread / levels), np.float16(2.0 ** -14))  # (N,) > 0 when all k are equal
    codes = np.rint((top.astype(np.float32)[:, None] - logprobs) / step.astype(np.float32)[:, None])  # (N, k)
    return np.clip(codes, 0, levels).astype(np.uint8), top, step


def dequantize_logprobs(codes: np.ndarray, top: np.ndarray, step: np.ndarray) -> np.ndarray:
    """(N, k) float32 log-probabilities from codes (N, k), top (N,) and step (N,)."""
    return top.astype(np.float32)[:, None] - codes.astype(np.float32) * step.astype(np.float32)[:, None]


def renormalise_head(logprobs: torch.Tensor, leftover: torch.Tensor) -> torch.Tensor:
    """Shift (…, k) head log-probabilities so their mass is exactly ``1 − exp(leftover)``."""
    import torch

    head_mass = torch.log1p(-leftover.double().exp().clamp(max=1.0 - 1e-12))  # (…,)
    shift = head_mass - logprobs.double().logsumexp(dim=-1)  # (…,)
    return (logprobs.double() + shift.unsqueeze(-1)).float()


def encode_labels(rows: Mapping[str, np.ndarray], *, k: int, logprob_bits: int) -> dict[str, np.ndarray]:
    """Version-2 value arrays of N real positions (flattened, position-major).

    Args:
        rows: ``input_ids`` (N,), ``topk_ids`` (N, k), ``topk_logprobs`` (N, k) float32 ≥ −6e4,
            ``leftover`` (N,).
    """
    order = np.argsort(rows["topk_ids"], axis=1, kind="stable")  # (N, k)
    ids = np.take_along_axis(rows["topk_ids"], order, axis=1).astype(np.int64)  # (N, k) ascending
    logprobs = np.take_along_axis(rows["topk_logprobs"], order, axis=1)  # (N, k)
    gaps = np.diff(ids, axis=1, prepend=0)  # (N, k): the first id, then gaps ≥ 1
    out = {"topk_ids": gaps.reshape(-1), "leftover": rows["leftover"].astype(np.float32)}
    if logprob_bits <= 8:
        codes, top, step = quantize_logprobs(logprobs, bits=logprob_bits)
        out.update(topk_logprobs=codes.reshape(-1), logprob_top=top, logprob_step=step)
    else:
        out["topk_logprobs"] = logprobs.reshape(-1).astype(np.float16 if logprob_bits == 16 else np.float32)
    return out


def decode_labels(flat: Mapping[str, np.ndarray], *, meta: Mapping[str, Any], path: Path
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(topk_ids (N, k) int64, topk_logprobs (N, k) float32) of N positions, before renormalising.

    Raises:
        ArtifactError: naming ``path``, when the values cannot be what the writer wrote
            (lengths, ids outside the vocabulary, codes outside the bit width).
    """
    k, vocab, n = int(meta["k"]), int(meta["vocab_size"]), len(flat["leftover"])
    if flat["topk_ids"].size != n * k or flat["topk_logprobs"].size != n * k:
        raise ArtifactError(f"{path}: {flat['topk_ids'].size} ids and {flat['topk_logprobs'].size} log-probabilities "
                            f"for {n} positions at k = {k} (expected {n * k}); rerun the label stage")
    ids = flat["topk_ids"].astype(np.int64).reshape(n, k)
    if int(meta.get("schema_version", 1)) >= 2:
        ids = np.cumsum(ids, axis=1)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        raise ArtifactError(f"{path}: token ids outside [0, {vocab}); the shard is corrupted, rerun the label stage")
    bits = int(meta.get("logprob_bits", 16))
    if int(meta.get("schema_version", 1)) < 2 or bits > 8:
        return ids, flat["topk_logprobs"].astype(np.float32).reshape(n, k)
    codes = flat["topk_logprobs"].reshape(n, k)
    if codes.size and int(codes.max()) >= 1 << bits:
        raise ArtifactError(f"{path}: log-probability codes above {(1 << bits) - 1} ({bits} bits); "
                            "the shard is corrupted, rerun the label stage")
    return ids, dequantize_logprobs(codes, flat["logprob_top"], flat["logprob_step"])
