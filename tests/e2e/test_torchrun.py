"""The classifier pipeline under torchrun (2 CPU processes, gloo) gives the single-process report.

Under torchrun each rank computes half of every minibatch's gradient and DDP sums the
halves. A single process with ``[run] batch_split = 2`` accumulates the same two halves,
so the two runs agree bit for bit (one thread each). Without it the single process
computes each gradient in one piece, which rounds differently; the numbers then agree
to float rounding only, and over the demo's 60 + 80 epochs those last bits grow into
visibly different models (measured: advantages 2 points apart).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distillguard.data.softlabel_shards import read_soft_labels
from tests_support import free_port, one_and_two_processes, run_quietly

pytestmark = pytest.mark.slow

SPEC = """
[run]
name = "ddp"
shard_rows = 256          # 700 of 1,000 transfer rows kept (far from private): 3 shards, round-robin by the two ranks
batch_split = 2           # the single-process run computes each gradient in the ranks' two halves
[data]
builtin = "purchase-synth"
sizes = { members = 300, nonmembers = 300, transfer = 1000, test = 300 }
synth = { features = 100, classes = 10, clusters = 5 }
[teacher]
epochs = 10
[student]
epochs = 10
[audit]
shadows = 4
canaries = 8
bootstrap = 50
"""


def _numbers(report: dict, path: str = "") -> dict[str, float]:
    """Every numeric leaf of report.json by its path."""
    if isinstance(report, dict):
        return {k: v for key, value in report.items() for k, v in _numbers(value, f"{path}.{key}").items()}
    if isinstance(report, list):
        return {k: v for i, value in enumerate(report) for k, v in _numbers(value, f"{path}[{i}]").items()}
    return {path: report} if isinstance(report, float | int) and not isinstance(report, bool) else {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    return one_and_two_processes(tmp_path_factory.mktemp("ddp"), SPEC)


def test_torchrun_report_equals_the_single_process_report(runs: tuple[Path, Path]) -> None:
    one, two = (json.loads((folder / "report.json").read_text()) for folder in runs)
    assert len(_numbers(one)) > 100 and _numbers(two) == _numbers(one)
    assert two == one  # every string and verdict too
    assert two["utility"]["teacher"]["test_accuracy"] > 0.5  # a real model, not two equal failures


def test_batch_split_must_match_the_number_of_processes(tmp_path: Path) -> None:
    (tmp_path / "spec.toml").write_text(SPEC.replace("batch_split = 2", "batch_split = 3"))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "distillguard", "teacher",
                           "spec.toml", "--run-dir", "x", "--device", "cpu"],
                          cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert "[run].batch_split = 3, but torchrun started 2 processes" in done.stderr


def test_torchrun_run_folder_is_written_once_by_rank_zero(runs: tuple[Path, Path]) -> None:
    one, two = runs
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert set(manifest["stages"]) == {"teacher", "label", "distill", "audit", "export"}
    assert not list(two.glob(".*.partial")) and not list(two.glob(".*.rank*"))
    ids_one, logits_one, _, meta = read_soft_labels(one / "softlabels")
    ids_two, logits_two, _, _ = read_soft_labels(two / "softlabels")
    assert len(meta["shards"]) == 3 and len(ids_two) == 700  # shards 0, 2 from rank 0 and 1 from rank 1, in one folder
    np.testing.assert_array_equal(ids_one, ids_two)
    np.testing.assert_array_equal(logits_two, logits_one)


@pytest.mark.parametrize("privacy", ['mechanism = "pate"\nteachers = 5', 'mechanism = "dp-sgd"\nepsilon = 4.0'])
def test_torchrun_trains_the_private_teachers_of_one_process(tmp_path: Path, privacy: str) -> None:
    """PATE's teachers are split among the ranks (each trains whole teachers, the states are
    gathered); DP-SGD's clipped-gradient sums are split (each rank clips its share, the sums
    are all-reduced, every rank adds the same noise). Either way: the single process's weights."""
    spec = SPEC.split("[teacher]")[0] + f"[privacy]\n{privacy}\n[teacher]\nepochs = 5\n"
    (tmp_path / "spec.toml").write_text(spec)
    run_quietly([sys.executable, "-m", "distillguard", "teacher", "spec.toml", "--run-dir", "one", "--device", "cpu"], tmp_path)
    run_quietly([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
          f"--master_port={free_port()}", "-m", "distillguard", "teacher", "spec.toml", "--run-dir", "two",
          "--device", "cpu"], tmp_path)
    weights = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one" / "teacher").rglob("*.safetensors"))
    assert weights
    for rel in weights:
        assert (tmp_path / "two" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes(), rel


def test_torchrun_audit_killed_on_one_rank_resumes_from_every_rank_s_checkpoints(
        runs: tuple[Path, Path], tmp_path: Path) -> None:
    """Each rank checkpoints its share of the shadows; a rerun finishes with the uninterrupted numbers."""
    (tmp_path / "spec.toml").write_text(SPEC.replace('name = "ddp"', 'name = "ddp"\ncheckpoint_seconds = 0'))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    command = ["-m", "distillguard", "run", "spec.toml", "--run-dir", "run", "--device", "cpu"]
    killed = subprocess.run([*torchrun, f"--master_port={free_port()}", *command], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                         "DISTILLGUARD_FAILPOINT": "audit/shadow-students.rank1of2.group0@epoch3"})
    assert killed.returncode != 0
    saved = {p.name for p in (tmp_path / "run" / ".checkpoints" / "audit").glob("*.pt")}
    assert any(".rank1of2." in name for name in saved) and any(".rank0of2." in name for name in saved), saved
    run_quietly([*torchrun, f"--master_port={free_port()}", *command], tmp_path)
    resumed = json.loads((tmp_path / "run" / "report.json").read_text())
    uninterrupted = json.loads((runs[1] / "report.json").read_text())
    assert resumed["attacks"] == uninterrupted["attacks"] and resumed["utility"] == uninterrupted["utility"]
