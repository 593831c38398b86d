"""Loading roles of mixed-type tables: the encoder is fitted on the transfer inputs only.

Two sources hold such tables: the four role files (CSV / Parquet) when the members file
has a text column or a blank, and one table cut into roles (``[data] table`` or a real
built-in, :mod:`distillguard.data.sources`). Either way the encoder sees the public rows
alone, so no category or statistic of the private data reaches a model folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.config import DataConfig
from distillguard.data.encoding import TableEncoder
from distillguard.data.tables import class_list, encode_labels, iter_frames, read_table
from distillguard.data.types import Schema, Split
from distillguard.errors import DataError


def _role_frames(cfg: DataConfig, role: str, *, seed: int, labeled: bool) -> tuple[pd.DataFrame, pd.Series | None, str]:
    if cfg.is_table():
        from distillguard.data.sources import role_frame

        features, labels, name = role_frame(cfg, role, seed=seed)
        return features, labels if labeled else None, name
    path = Path(getattr(cfg, role))
    features, labels = read_table(path, fmt=cfg.resolved_format(), label=cfg.label, role=role, labeled=labeled)
    if not labeled and cfg.label in features.columns:
        features = features.drop(columns=[cfg.label])
    features.columns = [str(c) for c in features.columns]
    return features, labels, str(path)


def fit_public_encoder(cfg: DataConfig, *, seed: int) -> TableEncoder:
    """The encoder, fitted on the transfer role's raw columns (never on private rows)."""
    features, _, _ = _role_frames(cfg, "transfer", seed=seed, labeled=False)
    return TableEncoder.fit(features)


def encoded_members(cfg: DataConfig, *, seed: int, features: pd.DataFrame | None = None,
                    labels: pd.Series | None = None) -> tuple[Schema, Split]:
    """The members, encoded, and a schema carrying the encoder (``features``: already read)."""
    if features is None:
        features, labels, name = _role_frames(cfg, "members", seed=seed, labeled=True)
    else:
        name = str(cfg.members)
    encoder = fit_public_encoder(cfg, seed=seed)
    extra = [c for c in features.columns if c not in encoder.raw_columns]
    if extra:
        raise DataError(f"{name}: feature columns {extra[:5]} are not in the transfer set; expected the same columns "
                        "in members and transfer")
    if cfg.is_table():
        from distillguard.data.sources import table_classes

        classes = table_classes(cfg)
    else:
        classes = class_list(labels)
        if len(classes) < 2:
            raise DataError(f"{name}: label column {cfg.label!r} has {len(classes)} class; expected at least 2")
    X = encoder.transform(features, path=name)
    names = encoder.output_names
    schema = Schema(names, classes, (len(names),), encoder.to_dict())
    return schema, Split(X=X, y=encode_labels(labels, classes=classes, path=Path(name)),
                         ids=np.arange(len(X), dtype=np.int64))


def encoded_role(cfg: DataConfig, role: str, *, schema: Schema, seed: int) -> Split:
    """``nonmembers``, ``transfer`` or ``test`` through the schema's encoder."""
    labeled = role != "transfer"
    features, labels, name = _role_frames(cfg, role, seed=seed, labeled=labeled)
    X = TableEncoder.from_dict(schema.encoding).transform(features, path=name)
    y = encode_labels(labels, classes=schema.classes, path=Path(name)) if labeled else None
    return Split(X=X, y=y, ids=np.arange(len(X), dtype=np.int64))


def encoded_transfer_chunks(cfg: DataConfig, *, schema: Schema, seed: int, rows: int) -> Iterator[Split]:
    """The transfer inputs in chunks of at most ``rows``, encoded; ids = rows of the role."""
    if cfg.is_table():
        whole = encoded_role(cfg, "transfer", schema=schema, seed=seed)
        for start in range(0, len(whole), rows):
            yield whole.subset(np.arange(start, min(start + rows, len(whole))))
        return
    encoder = TableEncoder.from_dict(schema.encoding)
    path = Path(cfg.transfer)
    for first, frame in iter_frames(path, fmt=cfg.resolved_format(), rows=rows, role="transfer"):
        frame.columns = [str(c) for c in frame.columns]
        features = frame.drop(columns=[cfg.label]) if cfg.label in frame.columns else frame
        matrix = encoder.transform(features, path=path, first_row=first)
        yield Split(X=matrix, y=None, ids=np.arange(first, first + len(matrix), dtype=np.int64))
