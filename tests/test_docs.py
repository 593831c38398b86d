"""The documentation cannot drift: the spec reference is generated, and the site builds.

(a) docs/reference/spec.md equals what tools/gen_spec_reference.py generates now;
(b) every key the loader accepts appears in that page, found by a walk of the spec
    written here independently of the generator's;
(c) ``mkdocs build --strict`` succeeds (a broken link or anchor fails it);
and the results pages' blocks, which the benchmark scripts rewrite, are well formed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from distillguard.config import Spec

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "reference" / "spec.md"


def _load_generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gen_spec_reference", REPO / "tools" / "gen_spec_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _models(annotation: object) -> tuple[list[type[BaseModel]], str]:
    """The models a type holds, and the path suffix for them ("" for a table, ".<name>" for a dict)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], ""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        found = [m for arg in args for m in _models(arg)[0]]
        return found, ""
    if origin in (list, tuple) and args:
        return _models(args[0])[0], ""
    if origin is dict and len(args) == 2:
        return _models(args[1])[0], ".<name>"
    return [], ""


def accepted_keys(model: object, prefix: str = "") -> set[str]:
    """Dotted paths of every key the loader accepts (every variant of a union included)."""
    keys: set[str] = set()
    for variant in _models(model)[0]:
        for name, info in variant.model_fields.items():
            key = info.alias or name
            path = f"{prefix}.{key}" if prefix else key
            keys.add(path)
            inner, suffix = _models(info.annotation)
            if inner:
                keys |= accepted_keys(info.annotation, path + suffix)
    return keys


def documented_keys(page: str) -> set[str]:
    """Dotted paths the page documents: each section's heading, and each row's key within its section."""
    keys: set[str] = set()
    section = ""
    for line in page.splitlines():
        heading = re.match(r"^## `\[{1,2}([^\]]*)\]{1,2}`", line)
        if heading:
            section = heading.group(1)
            keys.add(section)  # a table is documented by its own section
        elif line.startswith("## `top level`"):
            section = ""
        row = re.match(r"^\| `([^`]+)` \|", line)
        if row:
            keys.add(f"{section}.{row.group(1)}" if section else row.group(1))
    return keys


def test_spec_reference_page_is_current() -> None:
    generated = _load_generator().generate()
    assert PAGE.read_text(encoding="utf-8") == generated, (
        "docs/reference/spec.md is out of date: run python tools/gen_spec_reference.py")


def test_spec_reference_lists_every_key_the_loader_accepts() -> None:
    accepted = accepted_keys(Spec)
    assert {"run.seed", "teacher.epochs", "audit.lm.mia_texts", "gate.max_auc"} <= accepted  # the walk works
    missing = sorted(accepted - documented_keys(PAGE.read_text(encoding="utf-8")))
    assert not missing, f"spec keys missing from docs/reference/spec.md: {missing}"


def test_documented_keys_are_accepted_keys() -> None:
    extra = sorted(documented_keys(PAGE.read_text(encoding="utf-8")) - accepted_keys(Spec))
    assert not extra, f"docs/reference/spec.md documents keys the loader rejects: {extra}"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The site builds with warnings as errors (mkdocs-material comes with the dev extra)."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr


def test_results_blocks_are_well_formed_and_replaceable(tmp_path: Path) -> None:
    """Every results page has BEGIN/END pairs in order, and replacing one keeps the rest of the page."""
    for page in sorted((REPO / "docs" / "results").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        begins = re.findall(r"<!-- BEGIN: ([\w-]+) -->", text)
        ends = re.findall(r"<!-- END: ([\w-]+) -->", text)
        assert begins == ends, f"{page.name}: unmatched markers {begins} vs {ends}"
        assert len(set(begins)) == len(begins), f"{page.name}: a block name is used twice"
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from results_page import replace_between_markers
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    page = tmp_path / "page.md"
    page.write_text("before\n<!-- BEGIN: t -->\nold\n<!-- END: t -->\nafter\n", encoding="utf-8")
    replace_between_markers(page, "t", "| a |\n|---|\n| 1 |")
    assert page.read_text(encoding="utf-8") == "before\n<!-- BEGIN: t -->\n| a |\n|---|\n| 1 |\n<!-- END: t -->\nafter\n"
    with pytest.raises(ValueError, match="no '<!-- BEGIN: other -->'"):
        replace_between_markers(page, "other", "x")
