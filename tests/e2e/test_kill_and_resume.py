"""A run SIGKILLed inside each stage and started again ends with the uninterrupted report.

Kills are injected with ``DISTILLGUARD_FAILPOINT`` (the process SIGKILLs itself right
after the named checkpoint or shard is written), one stage after another in the same run
folder, so each restart resumes one stage from its checkpoint and the next kill lands in
the next stage. Same machine, seed and thread count: the report must be equal byte for byte.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import E2E_SPEC as SPEC

# (failpoint, the stage whose restart must say it resumed from a checkpoint)
KILLS = [
    ("teacher/teacher@epoch5", "teacher"),
    ("label/part-00000.parquet", None),  # no training in label: it relabels (cheap, deterministic)
    ("distill/student@epoch7", "distill"),
    ("audit/shadow-teachers.group0@epoch4", "audit"),
    ("audit/shadow-students.group0@epoch9", "audit"),
    ("audit/shadows-trained", "audit"),  # killed while scoring, after all shadows were saved
]


def _run(folder: Path, run_dir: str, failpoint: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DISTILLGUARD_FAILPOINT"}
    if failpoint:
        env["DISTILLGUARD_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, "-m", "distillguard", "run", "spec.toml", "--run-dir", run_dir],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=900)


def test_sigkill_in_every_stage_then_resume_gives_the_same_report(tmp_path: Path, finished_run: Path):
    """The reference is the shared uninterrupted run of the same spec (``finished_run``)."""
    (tmp_path / "spec.toml").write_text(SPEC)
    assert (finished_run.parent / "spec.toml").read_text() == SPEC

    resumed_stage = None
    for failpoint, next_resumes in KILLS:
        killed = _run(tmp_path, "killed", failpoint)
        assert killed.returncode == -signal.SIGKILL, (failpoint, killed.stderr[-2000:])
        if resumed_stage:
            assert f"{resumed_stage}: resuming from checkpoints" in killed.stderr, failpoint
        resumed_stage = next_resumes
        run_dir = tmp_path / "killed"
        assert not (run_dir / "report.json").exists()
        assert not (run_dir / "deploy").exists()
    final = _run(tmp_path, "killed")
    assert final.returncode == 0, final.stderr
    assert "audit: resuming from checkpoints" in final.stderr

    assert (tmp_path / "killed" / "report.json").read_bytes() == (finished_run / "report.json").read_bytes()
    student = "deploy/model.safetensors"
    assert (tmp_path / "killed" / student).read_bytes() == (finished_run / student).read_bytes()
    # Completed stages leave no training state behind (it holds teacher and shadow weights).
    assert not list((tmp_path / "killed" / ".checkpoints").rglob("*.pt"))
    assert not list((tmp_path / "killed").glob(".*.partial"))


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path):
    # A long teacher (many tiny epochs) so the interrupt lands inside its training.
    (tmp_path / "spec.toml").write_text(SPEC.replace("epochs = 15", "epochs = 100000", 1))
    # A shell's background jobs inherit SIGINT ignored (and Python then keeps ignoring it):
    # a trampoline gives the child the default disposition, as an interactive terminal would,
    # then execs the CLI. Not preexec_fn: Python code between fork and exec can deadlock when
    # this test process runs threads (JAX, once another test imported it).
    command = [sys.executable, "-m", "distillguard", "run", "spec.toml", "--run-dir", "out"]
    trampoline = f"import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv({command[0]!r}, {command!r})"
    process = subprocess.Popen([sys.executable, "-c", trampoline], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "out" / ".checkpoints" / "teacher" / "teacher.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "the teacher never saved a checkpoint"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and "run the same command again to resume" in last
    assert "Traceback" not in stderr
    assert checkpoint.exists()  # the work done so far is kept
    assert not (tmp_path / "out" / "teacher").exists()  # and nothing half-written is in place
    assert not list((tmp_path / "out").glob(".*.partial"))

