"""A re-audit of an unchanged teacher reuses its shadow teachers; the fast shadow path moves no audit number.

Both are user-visible: a second ``distillguard run`` on the same run folder with only
student knobs changed must report what a fresh run with those knobs reports, without
training a single shadow teacher; and the fused-optimizer shadow path (the default) must
report the numbers of the exact one to 3 decimals.
"""

from __future__ import annotations

import json
from pathlib import Path

import distillguard
from distillguard.audit import placement
from distillguard.stages.export import SENSITIVE
from distillguard.train import batched

SPEC = (
    '[run]\nname = "reaudit"\n[data]\nbuiltin = "purchase-synth"\n'
    "[data.sizes]\nmembers = 120\nnonmembers = 120\ntransfer = 300\ntest = 150\n"
    "[data.synth]\nfeatures = 40\nclasses = 6\nclusters = 3\n"
    "[teacher]\nhidden = [48]\nepochs = 12\n[student]\nhidden = [24]\nepochs = {student_epochs}\n"
    "[audit]\nbootstrap = 10\nshadows = 8\ncanaries = 8\n"
)


def _spec(folder: Path, student_epochs: int) -> Path:
    path = folder / f"spec{student_epochs}.toml"
    path.write_text(SPEC.format(student_epochs=student_epochs))
    return path


def _metrics(run: Path) -> dict:
    return json.loads((run / "audit" / "metrics.json").read_text())


def _rounded(value, digits: int = 3):
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items() if k not in ("seconds", "timing")}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


def test_reaudit_reuses_the_shadow_teachers(tmp_path: Path, monkeypatch) -> None:
    distillguard.run(_spec(tmp_path, 10), run_dir=tmp_path / "run")
    cache = tmp_path / "run" / "teacher" / "shadow-teachers"
    assert len(list(cache.glob("*.safetensors"))) == 1
    assert cache.stat().st_mode & 0o777 == 0o700
    assert any(Path(rel).parts[0] == "teacher" for rel in SENSITIVE)  # destroyed with the teacher

    fresh = distillguard.run(_spec(tmp_path, 8), run_dir=tmp_path / "fresh").run_dir

    def no_training(*args, **kwargs):
        raise AssertionError("the re-audit trained shadow teachers")

    monkeypatch.setattr(placement, "train_teachers", no_training)
    again = distillguard.run(_spec(tmp_path, 8), run_dir=tmp_path / "run").run_dir  # only the student changed
    assert _metrics(again)["attacks"] == _metrics(fresh)["attacks"]  # teacher and student, every attack
    assert _metrics(again)["empirical_epsilon"] == _metrics(fresh)["empirical_epsilon"]

    distillguard.export(_spec(tmp_path, 8), run_dir=tmp_path / "run", destroy_teacher=True)
    assert not cache.exists()


def test_fast_shadow_path_reports_the_exact_paths_numbers(tmp_path: Path, monkeypatch) -> None:
    fast = distillguard.run(_spec(tmp_path, 10), run_dir=tmp_path / "fast").run_dir
    monkeypatch.setattr(batched, "FAST", False)
    exact = distillguard.run(_spec(tmp_path, 10), run_dir=tmp_path / "exact").run_dir
    a, b = _metrics(fast), _metrics(exact)
    assert {row["target"] for row in a["attacks"]} == {"teacher", "student"}
    assert _rounded(a["attacks"]) == _rounded(b["attacks"])
    assert _rounded(a["empirical_epsilon"]) == _rounded(b["empirical_epsilon"])
