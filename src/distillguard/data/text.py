"""Text data for language models: one loader per role, as :mod:`distillguard.data` for tables.

A role is a JSONL file (``{"text": ...}`` per line) or a role of a built-in corpus,
``pii-corpus`` or ``news-pii``. The transfer text of a built-in is generated from its own
streams (:func:`~distillguard.lm.pii_corpus.generate_transfer_texts`,
:func:`~distillguard.lm.news_corpus.generate_news_transfer`), so the label and distill
stages can produce it without generating the sensitive roles. Canaries and PII records
come from their optional files or from the built-in.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from distillguard.config import DataConfig, NewsPiiConfig, PiiCorpusConfig
from distillguard.errors import ConfigError, DataError
from distillguard.runs import sha256_file, sha256_json

__all__ = ["load_canaries", "load_pii", "load_texts", "text_fingerprint"]


def _source(cfg: DataConfig, role: str) -> str:
    return str(getattr(cfg, role)) if cfg.builtin is None else f"builtin {cfg.builtin} {role} text"


def _builtin(seed: int, cfg: DataConfig):
    if cfg.builtin == "news-pii":
        return _generate_news(seed, cfg.news_pii.model_dump_json())
    return _generate(seed, cfg.pii_corpus.model_dump_json())


def _knobs(cfg: DataConfig) -> NewsPiiConfig | PiiCorpusConfig:
    return cfg.news_pii if cfg.builtin == "news-pii" else cfg.pii_corpus


@lru_cache(maxsize=2)
def _generate_news(seed: int, knobs_json: str):
    """The whole news-pii corpus, cached per (seed, knobs)."""
    from distillguard.lm.news_corpus import generate_news_corpus

    knobs = NewsPiiConfig.model_validate_json(knobs_json)
    try:
        return generate_news_corpus(seed=seed, repetitions=tuple(knobs.repetitions),
                                    pii_mentions=tuple(knobs.pii_mentions),
                                    **knobs.model_dump(exclude={"repetitions", "pii_mentions"}))
    except ValueError as why:  # sizes the corpus cannot fill: a spec error, named by its section
        raise ConfigError(str(why)) from None


@lru_cache(maxsize=2)
def _news_transfer(seed: int, knobs_json: str) -> tuple[str, ...]:
    from distillguard.lm.news_corpus import generate_news_transfer

    knobs = NewsPiiConfig.model_validate_json(knobs_json)
    try:
        return tuple(generate_news_transfer(seed=seed, member_bytes=knobs.member_bytes,
                                            nonmember_bytes=knobs.nonmember_bytes, test_bytes=knobs.test_bytes,
                                            transfer_bytes=knobs.transfer_bytes,
                                            pii_share=knobs.pii_share if knobs.transfer_pii else 0.0))
    except ValueError as why:
        raise ConfigError(str(why)) from None


@lru_cache(maxsize=4)
def _generate(seed: int, knobs_json: str):
    """The whole built-in corpus, cached per (seed, knobs): every stage of a run asks for it."""
    from distillguard.lm.pii_corpus import generate_pii_corpus

    knobs = PiiCorpusConfig.model_validate_json(knobs_json)
    return generate_pii_corpus(seed=seed, target_bytes=knobs.member_bytes, repetitions=tuple(knobs.repetitions),
                               canaries_per_count=knobs.canaries_per_count, nonmember_bytes=knobs.nonmember_bytes,
                               test_bytes=knobs.test_bytes, transfer_bytes=knobs.transfer_bytes,
                               pii_mentions=tuple(knobs.pii_mentions), pii_people_per_count=knobs.pii_people_per_count,
                               transfer_in_domain=knobs.transfer_in_domain)


@lru_cache(maxsize=4)
def _builtin_transfer(seed: int, transfer_bytes: int, in_domain: float) -> tuple[str, ...]:
    from distillguard.lm.pii_corpus import generate_transfer_texts

    return tuple(generate_transfer_texts(seed=seed, target_bytes=transfer_bytes, in_domain=in_domain))


def load_texts(cfg: DataConfig, role: str, *, seed: int) -> list[str]:
    """The documents of one role (``members``, ``nonmembers``, ``transfer`` or ``test``).

    Raises:
        DataError: a bad JSONL file, naming the file and line.
    """
    from distillguard.lm.data import read_jsonl_texts

    if cfg.builtin is None:
        return read_jsonl_texts(Path(getattr(cfg, role)))
    if role == "transfer" and cfg.builtin == "news-pii":
        return list(_news_transfer(seed, cfg.news_pii.model_dump_json()))
    if role == "transfer":
        knobs = cfg.pii_corpus
        return list(_builtin_transfer(seed, knobs.transfer_bytes or knobs.member_bytes, knobs.transfer_in_domain))
    return list(getattr(_builtin(seed, cfg), role))


def load_text_groups(cfg: DataConfig, role: str, *, seed: int) -> list[str] | None:
    """The group of each document of ``role`` (same order as :func:`load_texts`), or None when they are independent.

    JSONL: the optional ``"group"`` key; ``news-pii``: the BBC article a passage was cut from.
    """
    from distillguard.lm.data import read_jsonl_groups

    if cfg.builtin is None:
        return read_jsonl_groups(Path(getattr(cfg, role)))
    if cfg.builtin != "news-pii":
        return None
    from distillguard.lm.news_corpus import passage_articles

    knobs = cfg.news_pii
    return passage_articles(seed=seed, member_bytes=knobs.member_bytes, nonmember_bytes=knobs.nonmember_bytes,
                            test_bytes=knobs.test_bytes, transfer_bytes=knobs.transfer_bytes, role=role)


def load_canaries(cfg: DataConfig, *, seed: int) -> list:
    """The planted canaries (:class:`~distillguard.lm.data.CanarySpec`), index = canary id; [] if none."""
    from distillguard.lm.data import read_canaries

    if cfg.builtin is not None:
        return list(_builtin(seed, cfg).canaries)
    return read_canaries(cfg.canaries) if cfg.canaries is not None else []


def load_pii(cfg: DataConfig, *, seed: int) -> list:
    """The PII records (:class:`~distillguard.lm.data.PiiRecord`) the members mention; [] if none."""
    from distillguard.lm.data import read_pii

    if cfg.builtin is not None:
        return list(_builtin(seed, cfg).pii)
    return read_pii(cfg.pii) if cfg.pii is not None else []


def text_fingerprint(cfg: DataConfig, role: str, *, seed: int) -> str:
    """sha256 of a role's file (or of the built-in's parameters: it is regenerated from them)."""
    if cfg.builtin is not None:
        return sha256_json({"builtin": cfg.builtin, "seed": seed, "knobs": _knobs(cfg).model_dump(),
                            "role": role})
    path = getattr(cfg, role)
    if path is None:
        return "absent"
    if not Path(path).is_file():
        raise DataError(f"{path}: [data].{role} file not found")
    return sha256_file(path)
