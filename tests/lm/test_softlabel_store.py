"""The compact soft-label store (schema 2): round trip, id width, old stores, corrupted shards, the spec knob."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from distillguard.config import parse_spec
from distillguard.errors import ArtifactError, ConfigError
from distillguard.lm import softlabel_codec as codec
from distillguard.lm.blocks import iter_token_blocks
from distillguard.lm.softlabel_reader import SoftLabelReader, bytes_per_token
from distillguard.lm.softlabels import META, write_soft_labels
from distillguard.runs import sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")
K = 32


@pytest.fixture(scope="module")
def blocks(small_corpus, small_tokenizer) -> list[list[int]]:
    return list(iter_token_blocks(small_tokenizer, small_corpus.transfer[:24], block_len=64))


@pytest.fixture(scope="module")
def teacher(trained_teacher):
    return trained_teacher[0].eval()


def _truth(teacher, block: list[int], k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher's sorted top-k ids (n, k), their log-probabilities (n, k) and the leftover (n,)."""
    with torch.no_grad():
        logprobs = torch.log_softmax(teacher(torch.tensor([block])).logits[0].float(), dim=-1)  # (n, V)
    top = logprobs.topk(k, dim=-1)
    ids, order = top.indices.sort(dim=-1)
    leftover = logprobs.scatter(-1, top.indices, float("-inf")).logsumexp(-1)
    return ids, top.values.gather(-1, order), leftover


def _read_all(folder: Path) -> dict[int, tuple]:
    """block index → (n, sorted ids, their log-probs, leftover) as the reader returns them."""
    out = {}
    for batch in SoftLabelReader(folder).batches(batch_size=5):
        for row in range(len(batch.block)):
            n = int(batch.mask[row].sum())
            ids, order = batch.topk_ids[row, :n].sort(dim=-1)
            out[int(batch.block[row])] = (n, ids, batch.topk_logprobs[row, :n].gather(-1, order), batch.leftover[row, :n])
    return out


def test_quantized_round_trip(tmp_path: Path, teacher, blocks) -> None:
    """Ids exact, log-probabilities within step / 2 as stored and within one step once renormalised, mass 1."""
    meta = write_soft_labels(teacher, blocks, folder=tmp_path, k=K, batch_size=4)
    assert (meta["schema_version"], meta["logprob_bits"], meta["id_dtype"]) == (2, 4, "uint16")
    table = pq.read_table(tmp_path / meta["shards"][0]["file"])
    assert table.schema.field("topk_ids").type.value_type == pa.uint16()
    assert table.schema.field("topk_logprobs").type.value_type == pa.uint8()
    read = _read_all(tmp_path)
    assert sorted(read) == list(range(len(blocks)))
    worst_stored = worst_read = 0.0
    for index, block in enumerate(blocks):
        ids, logprobs, leftover = _truth(teacher, block, K)
        n, got_ids, got_logprobs, got_leftover = read[index]
        assert n == len(block) and torch.equal(got_ids, ids)
        step = (logprobs.max(-1).values - logprobs.min(-1).values) / 15  # (n,) the 4-bit step, before float16
        error = (got_logprobs - logprobs).abs().max(-1).values  # (n,)
        assert (error <= step * 1.01 + 2e-3).all(), float((error - step).max())
        worst_read = max(worst_read, float((error / step).max()))
        torch.testing.assert_close(got_leftover, leftover)
        mass = torch.logaddexp(got_logprobs.double().logsumexp(-1), got_leftover.double())  # log Σ p, all buckets
        torch.testing.assert_close(mass, torch.zeros(n, dtype=torch.float64), atol=1e-6, rtol=0)
    row = table.slice(0, 1)  # the stored values, before renormalising: within half a step
    flat = {name: row.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            for name in row.column_names if name != "block"}
    stored_ids, stored = codec.decode_labels(flat, meta=meta, path=tmp_path)
    ids, logprobs, _ = _truth(teacher, blocks[0], K)
    assert np.array_equal(stored_ids, ids.numpy())
    half_step = flat["logprob_step"].astype(np.float32)[:, None] / 2
    worst_stored = float((np.abs(stored - logprobs.numpy()) / half_step).max())
    assert 0.3 < worst_stored <= 1.0 + 1e-3  # quantized (not exact), and within the bound
    assert worst_read > 0.3


def test_compact_store_is_smaller_than_the_first_layout(tmp_path: Path, teacher, blocks) -> None:
    """Same labels, three layouts; the float16 v2 store holds the same values as the v1 one."""
    sizes = {}
    for name, bits, version in (("v1", 16, 1), ("v2-f16", 16, 2), ("v2-4bit", 4, 2)):
        write_soft_labels(teacher, blocks, folder=tmp_path / name, k=128, batch_size=4, logprob_bits=bits,
                          schema_version=version)
        sizes[name] = bytes_per_token(tmp_path / name)
    print({name: round(size, 1) for name, size in sizes.items()})
    assert sizes["v2-4bit"] < 0.5 * sizes["v1"] and sizes["v2-f16"] < sizes["v1"]
    first, second = _read_all(tmp_path / "v1"), _read_all(tmp_path / "v2-f16")
    for index in first:
        assert torch.equal(first[index][1], second[index][1])
        torch.testing.assert_close(first[index][2], second[index][2], rtol=0, atol=0)


class _PeakedTeacher(torch.nn.Module):
    """A stand-in causal LM of vocabulary V whose most likely next tokens are V−1, 0 and V−2."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(n_positions=8)
        self.out = torch.nn.Linear(1, vocab, bias=False)  # only its shape is read: the vocabulary size

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.out

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        vocab = self.out.weight.shape[0]
        logits = torch.zeros((*input_ids.shape, vocab))  # (B, L, V)
        logits[..., vocab - 1], logits[..., 0], logits[..., vocab - 2] = 9.0, 8.0, 7.0
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize(("vocab", "width"), [(65_536, pa.uint16()), (65_537, pa.uint32())])
def test_id_width_follows_the_vocabulary(tmp_path: Path, vocab: int, width) -> None:
    assert codec.id_dtype(vocab) == str(width)
    block = [vocab - 1, 0, vocab - 2, 1]
    meta = write_soft_labels(_PeakedTeacher(vocab), [block], folder=tmp_path, k=3, batch_size=1)
    assert meta["id_dtype"] == str(width)
    schema = pq.read_schema(tmp_path / meta["shards"][0]["file"])
    assert schema.field("topk_ids").type.value_type == width and schema.field("input_ids").type.value_type == width
    batch = next(SoftLabelReader(tmp_path).batches(batch_size=1))
    assert batch.input_ids[0].tolist() == block
    assert batch.topk_ids[0].tolist() == [[0, vocab - 2, vocab - 1]] * 4  # sorted, the largest id intact


def test_a_store_of_the_previous_format_still_reads(tmp_path: Path, teacher, blocks) -> None:
    """A schema-1 store, with the meta keys it had (no logprob_bits, id_dtype), reads as before."""
    write_soft_labels(teacher, blocks[:6], folder=tmp_path, k=8, batch_size=4, logprob_bits=16, schema_version=1)
    meta = json.loads((tmp_path / META).read_text())
    for key in ("logprob_bits", "id_dtype", "compression_level", "use_dictionary", "column_encoding"):
        meta.pop(key, None)
    (tmp_path / META).write_text(json.dumps({**meta, "logprob_dtype": "float16", "compression": "zstd"}))
    assert pq.read_schema(tmp_path / meta["shards"][0]["file"]).field("topk_ids").type.value_type == pa.int32()
    batch = next(SoftLabelReader(tmp_path).batches(batch_size=6))
    for row in range(6):
        with torch.no_grad():
            logprobs = torch.log_softmax(teacher(torch.tensor([blocks[row]])).logits[0], dim=-1)
        top = logprobs.topk(8, dim=-1)
        n = len(blocks[row])
        assert torch.equal(batch.topk_ids[row, :n], top.indices)  # rank order, as the first layout stored them
        torch.testing.assert_close(batch.topk_logprobs[row, :n], top.values, rtol=1e-3, atol=2e-3)


def test_an_unknown_schema_version_is_refused(tmp_path: Path, teacher, blocks) -> None:
    write_soft_labels(teacher, blocks[:2], folder=tmp_path, k=4, batch_size=2)
    meta = json.loads((tmp_path / META).read_text())
    (tmp_path / META).write_text(json.dumps({**meta, "schema_version": 3}))
    with pytest.raises(ArtifactError, match=r"softlabels.json: schema_version 3 is not one this distillguard reads"):
        SoftLabelReader(tmp_path)


def _rehash(folder: Path) -> None:
    """Record the shards' current sha256, as if the corruption had happened before hashing."""
    meta = json.loads((folder / META).read_text())
    for shard in meta["shards"]:
        shard["sha256"] = sha256_file(folder / shard["file"])
    (folder / META).write_text(json.dumps(meta))


def _one_line_error(folder: Path) -> str:
    with pytest.raises(ArtifactError) as error:
        list(SoftLabelReader(folder).batches(batch_size=4))
    message = str(error.value)
    assert "\n" not in message
    return message


def test_truncated_or_corrupted_shards_name_the_file(tmp_path: Path, teacher, blocks) -> None:
    write_soft_labels(teacher, blocks[:4], folder=tmp_path, k=8, batch_size=2, rows_per_shard=2)
    second = tmp_path / "softlabels-00001.parquet"
    intact = second.read_bytes()
    second.write_bytes(intact[: len(intact) // 2])
    _rehash(tmp_path)
    assert _one_line_error(tmp_path).startswith(f"{second}: unreadable Parquet shard")

    table = pq.read_table(pa.BufferReader(intact))
    codes = table.column("topk_logprobs").combine_chunks()
    bad = pa.ListArray.from_arrays(codes.offsets, pa.array(np.full(len(codes.values), 200, np.uint8)))
    pq.write_table(table.set_column(table.schema.get_field_index("topk_logprobs"), "topk_logprobs", bad), second)
    _rehash(tmp_path)
    message = _one_line_error(tmp_path)
    assert str(second) in message and "codes above 15" in message

    gaps = table.column("topk_ids").combine_chunks()
    bad = pa.ListArray.from_arrays(gaps.offsets, pa.array(np.full(len(gaps.values), 300, np.uint16)))
    pq.write_table(table.set_column(table.schema.get_field_index("topk_ids"), "topk_ids", bad), second)
    _rehash(tmp_path)
    message = _one_line_error(tmp_path)
    assert str(second) in message and "token ids outside [0, 512)" in message


def test_bad_format_parameters(tmp_path: Path, teacher, blocks) -> None:
    with pytest.raises(ValueError, match=r"'logprob_bits' parameter must be one of \[2, 3, 4, 5, 6, 7, 8, 16, 32\]"):
        write_soft_labels(teacher, blocks[:1], folder=tmp_path, k=4, logprob_bits=1)
    with pytest.raises(ValueError, match=r"'logprob_bits' parameter must be one of \[16, 32\] \(schema_version 1\)"):
        write_soft_labels(teacher, blocks[:1], folder=tmp_path, k=4, logprob_bits=4, schema_version=1)


def test_the_spec_knob(tmp_path: Path) -> None:
    lm = parse_spec({"data": {"builtin": "pii-corpus"}, "softlabels": {"logprob_bits": 8}}, base_dir=tmp_path)
    assert lm.softlabels.logprob_bits == 8 and lm.softlabels.is_identity()
    assert parse_spec({"data": {"builtin": "pii-corpus"}}, base_dir=tmp_path).softlabels.logprob_bits == 4
    with pytest.raises(ConfigError, match=r"logprob_bits.*must be one of \[2, 3, 4, 5, 6, 7, 8, 16, 32\] \(got 9\)"):
        parse_spec({"data": {"builtin": "pii-corpus"}, "softlabels": {"logprob_bits": 9}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"\[softlabels\]: \['logprob_bits'\] set the causal-LM soft-label store"):
        parse_spec({"data": {"builtin": "digits"}, "softlabels": {"logprob_bits": 8}}, base_dir=tmp_path)
