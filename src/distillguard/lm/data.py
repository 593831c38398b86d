"""Language-model data files: JSONL text roles, canaries and PII records (CONTRACT.md).

Every reader fails with one :class:`~distillguard.errors.DataError` line that names the
file and the 1-based line (editor convention) and says what was expected. Canary ids are
the 0-based line of the canaries file (``canary_id`` in report.json), so a blank line in
the middle of a canaries file is refused rather than silently shifting every id after it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillguard.errors import DataError
from distillguard.runs import atomic_write_text

DIGITS = "0123456789"
_CANARY_KEYS = ("prefix", "secret", "repetitions", "alphabet", "suffix")


@dataclass(frozen=True)
class CanarySpec:
    """A secret planted in the members text: ``prefix + secret + suffix`` occurs ``repetitions`` times.

    Random fillings for exposure (Carlini et al. 2019) are strings of ``len(secret)``
    characters over ``alphabet``. ``suffix`` is the known text that follows the secret
    where it was planted (a sentence's final ``"."``, a line break); an attacker who knows
    the format scores it too, so exposure scores ``secret + suffix`` and every
    ``filling + suffix`` after the prefix. ``""`` (the default) scores the secret alone.
    """

    prefix: str
    secret: str
    repetitions: int
    alphabet: str = DIGITS
    suffix: str = ""

    @property
    def text(self) -> str:
        """The planted text, ``prefix + secret + suffix``."""
        return self.prefix + self.secret + self.suffix

    def to_json(self) -> dict[str, Any]:
        out = {"prefix": self.prefix, "secret": self.secret, "repetitions": self.repetitions,
               "alphabet": self.alphabet}
        return {**out, "suffix": self.suffix} if self.suffix else out


@dataclass(frozen=True)
class PiiRecord:
    """One person's PII: a name and named attributes (``email``, ``phone``, ``account``, ...).

    ``mentions``, when known, is how many member documents mention the person (the PII
    probe reports its rate per count); it is not a PII value.
    """

    name: str
    attributes: dict[str, str] = field(default_factory=dict)
    mentions: int | None = None

    def fields(self) -> dict[str, str]:
        """The name and the attributes: what a probe template may name."""
        return {"name": self.name, **self.attributes}

    def to_json(self) -> dict[str, Any]:
        return {**self.fields(), **({"mentions": self.mentions} if self.mentions is not None else {})}


@dataclass(frozen=True)
class CanaryCount:
    """How often a canary's ``prefix + secret`` occurs in the members text."""

    canary_id: int
    declared: int
    counted: int


def _json_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, decoded line)`` for each non-blank line, reading lazily."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a JSONL file")
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}:{number}: not valid UTF-8 (byte {error.start}); "
                                "save the file as UTF-8") from None
            if text.strip():
                yield number, text


def _parse_object(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{number}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
    return value


def iter_jsonl_texts(path: str | Path) -> Iterator[str]:
    """Stream one role of a language-model data set: one ``{"text": ...}`` object per line.

    Lazy, so the label stage can feed a large transfer file to the teacher without holding
    it; errors surface when their line is reached. Blank lines are skipped; other keys on
    a line are ignored.

    Raises:
        DataError: missing or empty file, non-UTF-8 bytes, bad JSON, or a line without a
            string ``"text"``, naming the file and line.
    """
    path = Path(path)
    empty = True
    for number, line in _json_lines(path):
        value = _parse_object(path, number, line)
        if "text" not in value:
            raise DataError(f'{path}:{number}: missing key "text"; expected {{"text": "..."}} on every line')
        if not isinstance(value["text"], str):
            raise DataError(f'{path}:{number}: "text" must be a string, got {type(value["text"]).__name__}')
        empty = False
        yield value["text"]
    if empty:
        raise DataError(f'{path}: empty; expected one {{"text": "..."}} object per line')


def read_jsonl_texts(path: str | Path) -> list[str]:
    """All texts of one role (see :func:`iter_jsonl_texts` for the format and errors)."""
    return list(iter_jsonl_texts(path))


def read_jsonl_groups(path: str | Path) -> list[str] | None:
    """Each line's optional ``"group"`` (a string or an integer: documents of one person, thread or source), or
    None when no line has one; a line without one is a group of its own.

    Raises:
        DataError: a ``"group"`` that is neither a string nor an integer, naming the file and line.
    """
    path = Path(path)
    groups: list[str] = []
    found = False
    for number, line in _json_lines(path):
        value = _parse_object(path, number, line).get("group")
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
            raise DataError(f'{path}:{number}: "group" must be a string or an integer, got {type(value).__name__}')
        found = found or value is not None
        groups.append(f"line-{number}" if value is None else f"group-{value}")
    return groups if found else None


def write_jsonl_texts(path: str | Path, texts: Iterable[str]) -> None:
    """Write ``{"text": ...}`` lines atomically (the inverse of :func:`read_jsonl_texts`)."""
    atomic_write_text(path, "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))


def read_canaries(path: str | Path) -> list[CanarySpec]:
    """Read a canaries file; canary ``i`` is the file's 0-based line ``i``.

    Raises:
        DataError: on bad JSON, unknown or missing keys, wrong types, a secret with
            characters outside its alphabet, or a blank line before the last canary.
    """
    path = Path(path)
    lines = list(_json_lines(path))
    if not lines:
        raise DataError(f'{path}: empty; expected one {{"prefix", "secret", "repetitions"}} object per line')
    canaries: list[CanarySpec] = []
    for expected_number, (number, line) in enumerate(lines, start=1):
        if number != expected_number:
            raise DataError(f"{path}:{expected_number}: blank line; canary ids are 0-based line numbers, "
                            "so remove blank lines between canaries")
        canaries.append(_canary_from_json(path, number, _parse_object(path, number, line)))
    return canaries


def _canary_from_json(path: Path, number: int, value: dict[str, Any]) -> CanarySpec:
    where = f"{path}:{number} (canary {number - 1})"
    unknown = sorted(set(value) - set(_CANARY_KEYS))
    if unknown:
        raise DataError(f"{where}: unknown key(s) {unknown}; valid keys are {list(_CANARY_KEYS)}")
    for key in ("prefix", "secret"):
        if not isinstance(value.get(key), str):
            raise DataError(f'{where}: "{key}" must be a string, got {value.get(key)!r}')
    repetitions = value.get("repetitions")
    if isinstance(repetitions, bool) or not isinstance(repetitions, int) or repetitions < 1:
        raise DataError(f'{where}: "repetitions" must be an integer >= 1, got {repetitions!r}')
    alphabet = value.get("alphabet", DIGITS)
    if not isinstance(alphabet, str) or not alphabet:
        raise DataError(f'{where}: "alphabet" must be a non-empty string, got {alphabet!r}')
    secret = value["secret"]
    if not secret:
        raise DataError(f'{where}: "secret" is empty')
    outside = sorted(set(secret) - set(alphabet))
    if outside:
        raise DataError(f'{where}: "secret" has characters {outside} outside its alphabet {alphabet!r}')
    suffix = value.get("suffix", "")
    if not isinstance(suffix, str):
        raise DataError(f'{where}: "suffix" must be a string (the text after the secret, e.g. "."), got {suffix!r}')
    return CanarySpec(value["prefix"], secret, repetitions, alphabet, suffix)


def write_canaries(path: str | Path, canaries: Sequence[CanarySpec]) -> None:
    """Write a canaries file atomically, one canary per line (line = canary id)."""
    atomic_write_text(path, "".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in canaries))


def check_canaries_planted(
    canaries: Sequence[CanarySpec], members: Sequence[str], *, missing: str = "error"
) -> list[CanaryCount]:
    """Count each canary's ``prefix + secret + suffix`` in the members text.

    An exposure measured for a canary the teacher never saw is meaningless, so an absent
    canary is an error by default. A count that differs from the declared repetitions
    only warns: the report should use the counted number.

    Args:
        canaries: specs, index = canary id.
        members: the members texts (each document searched on its own).
        missing: ``"error"`` (default) or ``"warn"`` for canaries that never occur.

    Returns:
        One :class:`CanaryCount` per canary, in order.

    Raises:
        DataError: some canary does not occur (all absent ids listed at once).
    """
    if missing not in ("error", "warn"):
        raise ValueError("The 'missing' parameter of check_canaries_planted must be 'error' or 'warn'. "
                         f"Got {missing!r} instead.")
    counts = [CanaryCount(i, c.repetitions, sum(doc.count(c.text) for doc in members)) for i, c in enumerate(canaries)]
    absent = [c.canary_id for c in counts if c.counted == 0]
    if absent:
        message = (f"canaries {absent} (0-based lines of the canaries file) do not occur in the members text; "
                   "plant each prefix + secret (+ suffix, when the line gives one) in the members file or remove the line")
        if missing == "error":
            raise DataError(message)
        warnings.warn(message, stacklevel=2)
    differ = [c for c in counts if c.counted not in (0, c.declared)]
    if differ:
        detail = ", ".join(f"canary {c.canary_id}: declared {c.declared}, counted {c.counted}" for c in differ)
        warnings.warn(f"canary repetitions differ from the members text ({detail}); the counted numbers are used",
                      stacklevel=2)
    return counts


def read_pii(path: str | Path) -> list[PiiRecord]:
    """Read a PII file: one ``{"name": ..., "email": ..., "phone": ..., ...}`` per line.

    Every value must be a string; ``name`` and at least one other attribute are required.
    An optional integer ``"mentions"`` (documents of the members that mention the person)
    is not an attribute: the PII probe groups its rates by it.
    """
    path = Path(path)
    records: list[PiiRecord] = []
    for number, line in _json_lines(path):
        value = _parse_object(path, number, line)
        mentions = value.pop("mentions", None)
        if mentions is not None and (isinstance(mentions, bool) or not isinstance(mentions, int) or mentions < 1):
            raise DataError(f'{path}:{number}: "mentions" must be an integer >= 1, got {mentions!r}')
        bad = sorted(k for k, v in value.items() if not isinstance(v, str))
        if bad:
            raise DataError(f"{path}:{number}: values must be strings; {bad} are not")
        if "name" not in value:
            raise DataError(f'{path}:{number}: missing key "name"; expected {{"name": ..., "email": ..., ...}}')
        attributes = {k: v for k, v in value.items() if k != "name"}
        if not attributes:
            raise DataError(f'{path}:{number}: record has only a name; add attributes such as "email" or "phone"')
        records.append(PiiRecord(value["name"], attributes, mentions=mentions))
    if not records:
        raise DataError(f'{path}: empty; expected one {{"name": ..., "email": ...}} object per line')
    return records


def write_pii(path: str | Path, records: Sequence[PiiRecord]) -> None:
    """Write a PII file atomically (the inverse of :func:`read_pii`)."""
    atomic_write_text(path, "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records))
