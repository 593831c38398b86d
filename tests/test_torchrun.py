"""The classifier pipeline under torchrun (2 CPU processes, gloo) gives the single-process report.

DistributedDataParallel sums each minibatch's gradient in two halves instead of one, so
the numbers agree to float rounding, not bit for bit: a score that moves by 1e-7 can
swap two near-tied records in a ranking. The bounds below are a few such swaps.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distillguard.stages.label import read_soft_labels

pytestmark = pytest.mark.slow

SPEC = """
[run]
name = "ddp"
shard_rows = 256          # 4 shards, labelled round-robin by the two ranks
[data]
builtin = "purchase-synth"
sizes = { members = 200, nonmembers = 200, transfer = 1000, test = 300 }
[teacher]
epochs = 10
[student]
epochs = 10
[audit]
shadows = 4
canaries = 8
bootstrap = 50
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _numbers(report: dict, path: str = "") -> dict[str, float]:
    """Every numeric leaf of report.json by its path."""
    if isinstance(report, dict):
        return {k: v for key, value in report.items() for k, v in _numbers(value, f"{path}.{key}").items()}
    if isinstance(report, list):
        return {k: v for i, value in enumerate(report) for k, v in _numbers(value, f"{path}[{i}]").items()}
    return {path: report} if isinstance(report, float | int) and not isinstance(report, bool) else {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp")
    (root / "spec.toml").write_text(SPEC)
    _run([sys.executable, "-m", "distillguard", "run", "spec.toml", "--run-dir", "one", "--device", "cpu"], root)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
          f"--master_port={_free_port()}", "-m", "distillguard", "run", "spec.toml", "--run-dir", "two",
          "--device", "cpu"], root)
    return root / "one", root / "two"


def test_torchrun_report_matches_single_process(runs: tuple[Path, Path]) -> None:
    one, two = (json.loads((folder / "report.json").read_text()) for folder in runs)
    a, b = _numbers(one), _numbers(two)
    assert a.keys() == b.keys()
    assert b[".utility.teacher.test_accuracy"] == pytest.approx(a[".utility.teacher.test_accuracy"], abs=1 / 300)
    assert b[".utility.student.test_accuracy"] == pytest.approx(a[".utility.student.test_accuracy"], abs=1 / 300)
    assert b[".utility.teacher.test_loss"] == pytest.approx(a[".utility.teacher.test_loss"], rel=1e-5)
    for row_one, row_two in zip(one["attacks"], two["attacks"], strict=True):
        assert (row_one["attack"], row_one["target"], row_one["population"]) == \
               (row_two["attack"], row_two["target"], row_two["population"])
        assert row_two["auc"] == pytest.approx(row_one["auc"], abs=2e-3), row_one["attack"]
    assert one["gate"]["passed"] == two["gate"]["passed"]


def test_torchrun_run_folder_is_written_once_by_rank_zero(runs: tuple[Path, Path]) -> None:
    one, two = runs
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert set(manifest["stages"]) == {"teacher", "label", "distill", "audit", "export"}
    assert not list(two.glob(".*.partial")) and not list(two.glob(".*.rank*"))
    ids_one, logits_one, _, meta = read_soft_labels(one / "softlabels")
    ids_two, logits_two, _, _ = read_soft_labels(two / "softlabels")
    assert len(meta["shards"]) == 4  # shards 0, 2 from rank 0 and 1, 3 from rank 1, in one folder
    np.testing.assert_array_equal(ids_one, ids_two)
    np.testing.assert_allclose(logits_two, logits_one, atol=1e-4)
