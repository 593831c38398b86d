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
