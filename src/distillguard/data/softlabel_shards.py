"""The classifier soft-label shard format: ``softlabels/`` as the label stage writes it.

The label stage writes it; the distill stage streams it and the audit's shadows replay the
release from its queries. Keeping writer, readers and their checks in one module means
the three cannot drift apart. A folder holds ``meta.json`` (``kind`` = ``"logits"`` or,
for PATE, ``"labels"``, ``n_classes``, ``schema``, ``shards``, ``queries``),
Parquet shards ``part-NNNNN.parquet`` with ``example_id`` and either a fixed-size list of
float32 ``logits`` or an int64 ``label``, and ``queries.parquet``: every transfer record
the teacher was asked about and whether its label was released.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard import distributed, progress
from distillguard.checkpoints import failpoint
from distillguard.data.types import Schema, Split
from distillguard.errors import ArtifactError
from distillguard.runs import read_json

SYNTHETIC_INPUTS = "synthetic_inputs.npy"  # (q, d) float32 DP synthetic transfer rows ([transfer.synthetic])
QUERIES = "queries.parquet"


def write_queries(folder: Path, *, ids: np.ndarray, answered: np.ndarray) -> None:
    """Every transfer record the teacher was asked about, and whether its label was released.

    The audit's shadows replay the release from these same queries.
    """
    pq.write_table(pa.table({"example_id": pa.array(ids, type=pa.int64()),
                             "answered": pa.array(answered, type=pa.bool_())}), folder / QUERIES)


def read_query_ids(folder: Path) -> np.ndarray:
    """(n,) ids of every queried transfer record (the leak guard's survivors)."""
    meta = read_json(folder / "meta.json")
    if "queries" not in meta:  # a run labelled before queries were recorded
        return read_soft_labels(folder)[0]
    return pq.read_table(folder / meta["queries"]).column("example_id").to_numpy()


def read_shard_ids(folder: Path, names: list[str]) -> np.ndarray:
    """(n,) ``example_id`` of the named shards, in order, without reading their targets."""
    return np.concatenate([pq.read_table(folder / name, columns=["example_id"]).column("example_id").to_numpy()
                           for name in names])


def write_label_shards(folder: Path, *, ids: np.ndarray, labels: np.ndarray, shard_rows: int) -> list[str]:
    """Released hard labels (PATE), ``example_id`` and ``label`` columns, shard by shard (round-robin over ranks)."""
    here, target = distributed.world(), distributed.shard_folder(folder)
    names = []
    for k, start in enumerate(range(0, max(len(ids), 1), shard_rows)):
        name = f"part-{k:05d}.parquet"
        names.append(name)
        if not here.owns(k):
            continue
        pq.write_table(pa.table({"example_id": pa.array(ids[start:start + shard_rows], type=pa.int64()),
                                 "label": pa.array(labels[start:start + shard_rows], type=pa.int64())}), target / name)
        failpoint(f"label/{name}")
    return names


def read_noisy_labels(folder: Path) -> tuple[np.ndarray, np.ndarray, Schema, dict]:
    """(example_ids (n,), labels (n,) int64, schema, meta) of the answered queries of a PATE softlabels/."""
    meta = read_json(folder / "meta.json")
    if meta.get("kind") != "labels":
        raise ArtifactError(f"{folder / 'meta.json'}: holds {meta.get('kind')!r}, not PATE labels")
    return (*_concatenate(iter_label_shards(folder), np.int64), Schema.from_dict(meta["schema"]), meta)


def iter_label_shards(folder: Path) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(example_ids (b,), targets) of one shard at a time, checked against meta.json.

    Targets are (b, C) float32 logits, or (b,) int64 labels for PATE's noisy votes. The
    distill stage streams these, so nothing here holds more than one shard.
    """
    meta = read_json(folder / "meta.json")
    pate = meta.get("kind") == "labels"
    for name in meta["shards"]:
        table = pq.read_table(folder / name)
        ids = table.column("example_id").to_numpy().astype(np.int64)
        if pate:
            labels = table.column("label").to_numpy().astype(np.int64)
            if labels.size and (labels.min() < 0 or labels.max() >= meta["n_classes"]):
                raise ArtifactError(f"{folder / name}: labels outside [0, {meta['n_classes']})")
            yield ids, labels
            continue
        n_classes = table.schema.field("logits").type.list_size
        if n_classes != meta["n_classes"]:
            raise ArtifactError(f"{folder / name}: {n_classes} logits per row, meta.json says {meta['n_classes']}")
        yield ids, table.column("logits").combine_chunks().flatten().to_numpy().reshape(-1, n_classes)


def _concatenate(shards: Iterator[tuple[np.ndarray, np.ndarray]], dtype) -> tuple[np.ndarray, np.ndarray]:
    ids, targets = zip(*shards)
    return np.concatenate(ids), np.concatenate(targets).astype(dtype, copy=False)


def write_logit_shards(folder: Path, *, ids: np.ndarray, logits_of, X: np.ndarray, shard_rows: int) -> list[str]:
    """Label ``X`` shard by shard (memory bounded by the shard size), one Parquet file each.

    Under torchrun, rank r labels shards r, r + N, … into the shared staged folder; every
    rank returns the full list of names, which rank 0 records.
    """
    here, target = distributed.world(), distributed.shard_folder(folder)
    names = []
    with progress.task("label: teacher on transfer set", len(X)) as advance:
        for k, start in enumerate(range(0, len(X), shard_rows)):
            names.append(f"part-{k:05d}.parquet")
            if not here.owns(k):
                continue
            logits = np.asarray(logits_of(X[start:start + shard_rows]), dtype=np.float32)  # (rows, C)
            write_logit_table(target / names[-1], ids=ids[start:start + shard_rows], logits=logits)
            failpoint(f"label/{names[-1]}")
            advance(len(logits))
    return names


def write_logit_table(path: Path, *, ids: np.ndarray, logits: np.ndarray) -> None:
    """One shard: ``example_id`` and a fixed-size list of float32 logits per row."""
    flat = pa.array(logits.reshape(-1), type=pa.float32())
    pq.write_table(pa.table({
        "example_id": pa.array(ids, type=pa.int64()),
        "logits": pa.FixedSizeListArray.from_arrays(flat, logits.shape[1]),
    }), path)


def read_soft_labels(folder: Path) -> tuple[np.ndarray, np.ndarray, Schema, dict]:
    """(example_ids (n,), logits (n, C) float32, schema, meta) from a softlabels/ folder."""
    meta = read_json(folder / "meta.json")
    if meta.get("kind") == "labels":
        raise ArtifactError(f"{folder / 'meta.json'}: holds PATE hard labels, not logits; use read_noisy_labels")
    return (*_concatenate(iter_label_shards(folder), np.float32), Schema.from_dict(meta["schema"]), meta)


class LabelQueue:
    """Label shards as one stream of rows in file order, taken up to a file row at a time."""

    def __init__(self, shards, folder: Path) -> None:
        self.shards, self.folder = iter(shards), folder
        self.ids, self.targets, self.last = np.zeros(0, dtype=np.int64), None, -1

    def _pull(self) -> bool:
        shard = next(self.shards, None)
        if shard is None:
            return False
        ids, targets = shard
        if len(ids) and (ids[0] <= self.last or np.any(np.diff(ids) <= 0)):
            raise ArtifactError(f"{self.folder}: label shards are not in transfer-file order; rerun the label stage")
        if len(ids):
            self.last = int(ids[-1])
        self.ids = np.concatenate([self.ids, ids])
        self.targets = targets if self.targets is None else np.concatenate([self.targets, targets])
        return True

    def take_through(self, last_row: int) -> tuple[np.ndarray, np.ndarray]:
        """The queued rows with file row <= ``last_row``, removed from the queue."""
        while (not len(self.ids) or self.ids[-1] <= last_row) and self._pull():
            pass
        n = int(np.searchsorted(self.ids, last_row, side="right"))
        ids, self.ids = self.ids[:n], self.ids[n:]
        if self.targets is None:
            return ids, np.zeros(0)
        targets, self.targets = self.targets[:n], self.targets[n:]
        return ids, targets

    def remaining(self) -> bool:
        """Whether rows are left once the transfer set is exhausted (they name rows it lacks)."""
        while not len(self.ids):
            if not self._pull():
                return False
        return True


INPUTS = "inputs.npy"


def write_label_inputs(folder: Path, X: np.ndarray) -> str:
    """The labelled rows' feature values (no label column) as ``inputs.npy``, row i = ``example_id`` i.

    Only Split-AI self-distillation writes it: its transfer inputs are the members' own, which
    the distill stage may not read from the data files. The folder then holds sensitive
    inputs and is made owner-only.
    """
    folder.chmod(0o700)
    np.save(folder / INPUTS, np.ascontiguousarray(X, dtype=np.float32), allow_pickle=False)
    return INPUTS


def iter_label_inputs(folder: Path, *, rows: int) -> Iterator[Split]:
    """``inputs.npy`` in chunks of at most ``rows`` (ids = rows), the way :func:`iter_transfer` cuts a transfer file."""
    X = np.load(folder / INPUTS, mmap_mode="r", allow_pickle=False)
    for start in range(0, len(X), rows):
        stop = min(start + rows, len(X))
        yield Split(X=np.array(X[start:stop], dtype=np.float32), y=None, ids=np.arange(start, stop, dtype=np.int64))
