"""Data for classifiers: one loader per role, so each stage loads only what it may see.

The teacher stage reads the members; the audit reads members and nonmembers; the label
and distill stages read only the transfer inputs (and the distill stage not even the
teacher). Keeping the loaders per role makes that separation visible in the code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillguard.config import DataConfig
from distillguard.data.builtins import builtin_schema, load_builtin
from distillguard.data.tables import load_split
from distillguard.data.types import Schema, Split
from distillguard.runs import sha256_file

__all__ = ["Schema", "Split", "data_fingerprint", "guard_transfer", "load_members", "load_role"]


def load_members(cfg: DataConfig, *, seed: int) -> tuple[Schema, Split]:
    """The members and the schema they define (feature columns and classes)."""
    if cfg.builtin is not None:
        return builtin_schema(cfg), load_builtin(cfg, "members", seed=seed)
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
    if cfg.builtin is not None:
        return load_builtin(cfg, role, seed=seed)
    split, _, _ = load_split(
        Path(getattr(cfg, role)), fmt=cfg.resolved_format(), label=cfg.label, role=role,
        columns=schema.feature_names, classes=schema.classes,
    )
    return split


def data_fingerprint(cfg: DataConfig, role: str) -> str:
    """sha256 of a role's file, or of the built-in's parameters (it is regenerated)."""
    if cfg.builtin is not None:
        from distillguard.runs import sha256_json

        return sha256_json({"builtin": cfg.builtin, "sizes": cfg.split_sizes().model_dump(), "synth": cfg.synth.model_dump()})
    path = Path(getattr(cfg, role))
    if not path.is_file():
        from distillguard.errors import DataError

        raise DataError(f"{path}: [data].{role} file not found")
    return sha256_file(path)


def guard_transfer(cfg: DataConfig, transfer: Split, *, schema: Schema, seed: int):
    """The leak guard: (transfer rows to keep, LeakReport) under ``[data] leak_policy``.

    Compares the transfer inputs with members and nonmembers (exact and near copies);
    policy ``fail`` raises :class:`~distillguard.errors.DataLeakError` before anything
    is labeled.
    """
    from distillguard.data.leakguard import apply_policy, find_tabular_leaks

    _, members = load_members(cfg, seed=seed)
    nonmembers = load_role(cfg, "nonmembers", schema=schema, seed=seed)
    report = find_tabular_leaks(transfer.X, {"members": members.X, "nonmembers": nonmembers.X},
                                relative_threshold=cfg.leak_threshold, seed=seed)
    source = str(cfg.transfer) if cfg.transfer is not None else f"builtin {cfg.builtin} transfer set"
    keep = apply_policy(report, policy=cfg.leak_policy, n_transfer=len(transfer), source=source)
    return keep, report
