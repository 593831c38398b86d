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


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_quietly(args: list[str], cwd: Path, **env: str) -> None:
    """Run a command with one thread per process; fail with the end of its stderr."""
    import os
    import subprocess

    done = subprocess.run(args, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1", **env}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def one_and_two_processes(root: Path, spec_text: str) -> tuple[Path, Path]:
    """``distillguard run`` of one spec as one process and under ``torchrun --nproc_per_node=2`` (gloo)."""
    import sys

    (root / "spec.toml").write_text(spec_text)
    command = ["-m", "distillguard", "run", "spec.toml", "--device", "cpu", "--run-dir"]
    run_quietly([sys.executable, *command, "one"], root, HF_HUB_OFFLINE="1")
    run_quietly([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                 f"--master_port={free_port()}", *command, "two"], root, HF_HUB_OFFLINE="1")
    return root / "one", root / "two"
