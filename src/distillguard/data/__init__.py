"""Data for classifiers: one loader per role, so each stage loads only what it may see.

The teacher stage reads the members; the audit reads members and nonmembers; the label
and distill stages read only the transfer inputs (and the distill stage not even the
teacher). Keeping the loaders per role makes that separation visible in the code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from distillguard.config import DataConfig
from distillguard.data.builtins import builtin_schema, load_builtin
from distillguard.data.encoded import encoded_members, encoded_role, encoded_transfer_chunks
from distillguard.data.encoding import needs_encoding
from distillguard.data.tables import iter_frames, load_split, read_table, to_matrix
from distillguard.data.types import Schema, Split
from distillguard.runs import sha256_file

__all__ = ["Schema", "Split", "TransferGuard", "data_fingerprint", "guard_transfer", "iter_transfer", "load_members",
           "load_role"]


def load_members(cfg: DataConfig, *, seed: int) -> tuple[Schema, Split]:
    """The members and the schema they define (feature columns, classes, the public encoder)."""
    if cfg.is_text_classification():
        from distillguard.data.text_roles import text_members

        return text_members(cfg, seed=seed)
    if cfg.is_table():
        return encoded_members(cfg, seed=seed)
    if cfg.builtin is not None:
        return builtin_schema(cfg), load_builtin(cfg, "members", seed=seed)
    if cfg.resolved_format() in ("csv", "parquet"):
        features, labels = read_table(Path(cfg.members), fmt=cfg.resolved_format(), label=cfg.label, role="members",
                                      labeled=True)
        if needs_encoding(features):
            features.columns = [str(c) for c in features.columns]
            return encoded_members(cfg, seed=seed, features=features, labels=labels)
    split, columns, classes = load_split(
        Path(cfg.members), fmt=cfg.resolved_format(), label=cfg.label, role="members", columns=None, classes=None
    )
    shape = (len(columns),)
    if cfg.input_shape is not None:
        shape = tuple(cfg.input_shape)
        if int(np.prod(shape)) != len(columns):
            from distillguard.errors import ConfigError

            raise ConfigError(f"[data].input_shape = {list(shape)} holds {int(np.prod(shape))} values, but "
                              f"{cfg.members} has {len(columns)} feature columns")
    return Schema(columns, classes, shape), split


def load_role(cfg: DataConfig, role: str, *, schema: Schema, seed: int) -> Split:
    """Load ``nonmembers``, ``transfer`` or ``test`` against a known schema."""
    if is_text_schema(schema):
        from distillguard.data.text_roles import text_role

        return text_role(cfg, role, schema=schema, seed=seed)
    if schema.encoding is not None:
        return encoded_role(cfg, role, schema=schema, seed=seed)
    if cfg.builtin is not None:
        return load_builtin(cfg, role, seed=seed)
    split, _, _ = load_split(
        Path(getattr(cfg, role)), fmt=cfg.resolved_format(), label=cfg.label, role=role,
        columns=schema.feature_names, classes=schema.classes,
    )
    return split


def data_fingerprint(cfg: DataConfig, role: str) -> str:
    """sha256 of a role's file, of the table it is cut from, or of the built-in's parameters (it is regenerated)."""
    if cfg.is_text_classification():
        from distillguard.data.text_roles import text_fingerprint

        return text_fingerprint(cfg, role)
    if cfg.is_table():
        from distillguard.data.sources import source_fingerprint

        return source_fingerprint(cfg)
    if cfg.builtin is not None:
        from distillguard.runs import sha256_json

        return sha256_json({"builtin": cfg.builtin, "sizes": cfg.split_sizes().model_dump(), "synth": cfg.synth.model_dump()})
    path = Path(getattr(cfg, role))
    if not path.is_file():
        from distillguard.errors import DataError

        raise DataError(f"{path}: [data].{role} file not found")
    return sha256_file(path)


def iter_transfer(cfg: DataConfig, *, schema: Schema, seed: int, rows: int) -> Iterator[Split]:
    """The transfer inputs in chunks of at most ``rows`` records, ids = file rows.

    CSV and Parquet files are read chunk by chunk, so a stage that consumes the chunks
    one at a time holds at most ``rows`` records whatever the file's size. Built-in data
    sets (and labelled texts) are read whole and then cut.
    """
    if is_text_schema(schema) or (cfg.builtin is not None and schema.encoding is None):
        whole = load_role(cfg, "transfer", schema=schema, seed=seed)
        for start in range(0, len(whole), rows):
            yield whole.subset(np.arange(start, min(start + rows, len(whole))))
        return
    if schema.encoding is not None:
        yield from encoded_transfer_chunks(cfg, schema=schema, seed=seed, rows=rows)
        return
    path = Path(cfg.transfer)
    for first, frame in iter_frames(path, fmt=cfg.resolved_format(), rows=rows, role="transfer"):
        frame.columns = [str(c) for c in frame.columns]
        label = "y" if cfg.resolved_format() == "npz" else cfg.label
        features = frame.drop(columns=[label]) if label in frame.columns else frame
        matrix = to_matrix(features, path=path, columns=schema.feature_names, first_row=first)
        yield Split(X=matrix, y=None, ids=np.arange(first, first + len(matrix), dtype=np.int64))


def shard_numbers(ids: np.ndarray, rows: int) -> np.ndarray | None:
    """The transfer shard (chunk of :func:`iter_transfer`) of each file row, or None if all are in one.

    The label stage writes one shard per chunk and the student trains block by block on
    them, so the shard a row falls in shapes its training; a set within one shard is one
    block, which every training path treats as "no blocks".
    """
    ids = np.asarray(ids, dtype=np.int64)
    if not len(ids) or int(ids.min()) // rows == int(ids.max()) // rows:
        return None
    return ids // rows


class TransferGuard:
    """The leak guard, applied chunk by chunk: the private data are read once.

    Every transfer row is compared with members and nonmembers (exact and near copies,
    :func:`~distillguard.data.leakguard_tabular.find_tabular_leaks`); a chunk's verdict does
    not depend on the other chunks, so guarding in chunks finds what guarding the whole
    set finds. Policy ``fail`` raises :class:`~distillguard.errors.DataLeakError` naming
    the file's rows, before the chunk is labelled.
    """

    def __init__(self, cfg: DataConfig, *, schema: Schema, seed: int) -> None:
        self.cfg, self.seed = cfg, seed
        self.text = is_text_schema(schema)
        if self.text:  # labelled texts are guarded as texts when the transfer role is read
            return
        _, members = load_members(cfg, seed=seed)
        nonmembers = load_role(cfg, "nonmembers", schema=schema, seed=seed)
        self.private = {"members": members.X, "nonmembers": nonmembers.X}
        self.source = str(cfg.transfer) if cfg.transfer is not None else (
            f"{cfg.table} transfer rows" if cfg.table is not None else f"builtin {cfg.builtin} transfer set")

    def check(self, chunk: Split, *, first_row: int = 0):
        """(rows of ``chunk`` to keep, LeakReport in file rows) under ``[data] leak_policy``."""
        from distillguard.data.leakguard import apply_policy, shift_rows
        from distillguard.data.leakguard_tabular import find_tabular_leaks

        if self.text:
            return self._text_check(chunk)
        report = shift_rows(find_tabular_leaks(chunk.X, self.private, relative_threshold=self.cfg.leak_threshold,
                                               seed=self.seed), first_row)
        keep = apply_policy(report, policy=self.cfg.effective_leak_policy(), n_transfer=first_row + len(chunk), source=self.source)
        return keep[keep >= first_row] - first_row, report


    def _text_check(self, chunk: Split):
        """Every row of ``chunk`` (the guard dropped or refused copies when reading), and the text
        guard's report with the chunk that starts the transfer role (empty with the others)."""
        from distillguard.data.leakguard import LeakReport
        from distillguard.data.text_roles import role_texts, transfer_leak_report

        report = transfer_leak_report(self.cfg, seed=self.seed)
        ids = role_texts(self.cfg, "transfer", seed=self.seed)[2]
        if not len(chunk) or not len(ids) or int(chunk.ids[0]) != int(ids[0]):
            report = LeakReport([], [], report.threshold, report.method)
        return np.arange(len(chunk), dtype=np.int64), report


def is_text_schema(schema: Schema) -> bool:
    """True for token-id rows of labelled texts (``kind = "hf-text"``)."""
    return schema.encoding is not None and schema.encoding.get("kind") == "text"


def guard_transfer(cfg: DataConfig, transfer: Split, *, schema: Schema, seed: int):
    """The leak guard on a whole transfer set: (rows to keep, LeakReport); see :class:`TransferGuard`."""
    return TransferGuard(cfg, schema=schema, seed=seed).check(transfer)
