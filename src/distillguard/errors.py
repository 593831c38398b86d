"""The small exception hierarchy the CLI turns into one-line errors.

Every error a user can cause (a bad spec, a bad data file, a tampered artifact) is a
:class:`DistillGuardError`; the CLI prints its message as ``error: ...`` and exits 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DistillGuardError(Exception):
    """Base class of user-facing errors; ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ConfigError(DistillGuardError):
    """The spec is malformed: unknown keys, wrong types, values out of range."""


class DataError(DistillGuardError):
    """A data file is missing, empty, malformed or inconsistent with the spec."""


class ArtifactError(DistillGuardError):
    """A run artifact is missing, corrupted or does not match its recorded hash."""


class DataLeakError(DistillGuardError):
    """The transfer set overlaps the sensitive data."""


def did_you_mean(value: str, choices: list[str], *, n: int = 3) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices``, or ``""``.

    A case-insensitive match comes first (``Diagnosis`` → ``diagnosis``), then a transposition
    (same letters: ``lable`` → ``label``), then the closest spellings by edit similarity
    (:func:`difflib.get_close_matches`).
    """
    import difflib

    same_case = [c for c in choices if c.lower() == value.lower() and c != value]
    lowered = {c.lower(): c for c in choices}
    anagrams = [lowered[c] for c in lowered if sorted(c) == sorted(value.lower()) and c != value.lower()]
    close = [lowered[c] for c in difflib.get_close_matches(value.lower(), list(lowered), n=n, cutoff=0.6)]
    matches = list(dict.fromkeys(same_case + anagrams or close))[:n]  # a sure match stands alone
    if not matches:
        return ""
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)"


def shown_list(items: list[str], *, limit: int = 40) -> str:
    """``'a', 'b', …`` with at most ``limit`` items and ``… (N more)`` when cut."""
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f", … ({len(items) - limit} more)" if len(items) > limit else "")
