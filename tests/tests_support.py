"""Helpers for tests that build specs (importable thanks to pytest's rootdir on sys.path)."""

from __future__ import annotations

from pathlib import Path

from distillguard.config import Spec, load_spec


def spec_with(folder: Path, fmt: str, extra: str = "") -> Spec:
    path = folder / f"spec_{fmt}.toml"
    path.write_text(
        f'[data]\nformat = "{fmt}"\nmembers = "members.{fmt}"\nnonmembers = "nonmembers.{fmt}"\n'
        f'transfer = "transfer.{fmt}"\ntest = "test.{fmt}"\n' + extra
    )
    return load_spec(path)
