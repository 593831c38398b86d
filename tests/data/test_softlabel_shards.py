"""The classifier soft-label shard format: what the label stage writes, distill and audit read back."""

from __future__ import annotations

import numpy as np
import pytest

from distillguard.data.softlabel_shards import (
    QUERIES,
    LabelQueue,
    iter_label_shards,
    read_noisy_labels,
    read_query_ids,
    read_soft_labels,
    write_label_shards,
    write_logit_shards,
    write_queries,
)
from distillguard.data.types import Schema
from distillguard.errors import ArtifactError
from distillguard.runs import atomic_write_json

SCHEMA = Schema(["a", "b"], [0, 1, 2], (2,))


def _meta(folder, *, kind: str, shards: list[str], n_classes: int = 3) -> None:
    atomic_write_json(folder / "meta.json", {"kind": kind, "n_classes": n_classes, "schema": SCHEMA.to_dict(),
                                             "shards": shards, "queries": QUERIES})


def test_logit_shards_round_trip_in_order(tmp_path):
    ids, X = np.arange(10, 17), np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    names = write_logit_shards(tmp_path, ids=ids, logits_of=np.asarray, X=X, shard_rows=3)
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    _meta(tmp_path, kind="logits", shards=names)
    got_ids, logits, schema, _ = read_soft_labels(tmp_path)
    assert got_ids.tolist() == ids.tolist() and logits.dtype == np.float32
    np.testing.assert_array_equal(logits, X)
    assert schema == SCHEMA
    with pytest.raises(ArtifactError, match="not PATE labels"):
        read_noisy_labels(tmp_path)


def test_label_shards_round_trip_and_out_of_range_labels_are_refused(tmp_path):
    names = write_label_shards(tmp_path, ids=np.array([1, 4, 5]), labels=np.array([0, 2, 1]), shard_rows=2)
    _meta(tmp_path, kind="labels", shards=names)
    ids, labels, _, _ = read_noisy_labels(tmp_path)
    assert ids.tolist() == [1, 4, 5] and labels.tolist() == [0, 2, 1]
    with pytest.raises(ArtifactError, match="PATE hard labels"):
        read_soft_labels(tmp_path)
    _meta(tmp_path, kind="labels", shards=names, n_classes=2)
    with pytest.raises(ArtifactError, match=r"labels outside \[0, 2\)"):
        list(iter_label_shards(tmp_path))


def test_query_ids_are_every_asked_record_answered_or_not(tmp_path):
    names = write_label_shards(tmp_path, ids=np.array([2]), labels=np.array([1]), shard_rows=4)
    _meta(tmp_path, kind="labels", shards=names)
    write_queries(tmp_path, ids=np.array([0, 2, 3]), answered=np.array([False, True, False]))
    assert read_query_ids(tmp_path).tolist() == [0, 2, 3]


def test_label_queue_takes_rows_through_a_file_row_and_refuses_disorder(tmp_path):
    shards = [(np.array([0, 2]), np.array([5, 6])), (np.array([3, 7]), np.array([7, 8]))]
    queue = LabelQueue(shards, tmp_path)
    ids, targets = queue.take_through(3)
    assert ids.tolist() == [0, 2, 3] and targets.tolist() == [5, 6, 7]
    assert queue.remaining()
    assert queue.take_through(9)[0].tolist() == [7] and not queue.remaining()
    with pytest.raises(ArtifactError, match="not in transfer-file order"):
        LabelQueue([(np.array([4]), np.array([0])), (np.array([2]), np.array([1]))], tmp_path).take_through(9)
