"""Shared fixtures: small user CSV splits and tiny specs that train in seconds on 2 cores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

TINY_MODELS = """
[teacher]
hidden = [64]
epochs = 15
[student]
hidden = [32]
epochs = 15
[audit]
bootstrap = 20
shadows = 8
canaries = 16
"""


def write_csv_splits(folder: Path, *, seed: int = 0, n_features: int = 12) -> dict[str, Path]:
    """Four CSV files of one distribution (string labels, named columns), like a user's export."""
    from sklearn.datasets import make_classification

    sizes = {"members": 200, "nonmembers": 200, "transfer": 600, "test": 300}
    X, y = make_classification(n_samples=sum(sizes.values()), n_features=n_features, n_informative=6,
                               n_classes=3, flip_y=0.1, random_state=seed)
    names = np.array(["low", "mid", "high"])[y]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(n_features)])
    frame["y"] = names
    paths, start = {}, 0
    for role, n in sizes.items():
        part = frame.iloc[start:start + n]
        start += n
        if role == "transfer":
            part = part.drop(columns=["y"])
        paths[role] = folder / f"{role}.csv"
        part.to_csv(paths[role], index=False)
    return paths


def csv_spec_text(name: str = "csvrun", extra: str = "") -> str:
    return (f'[run]\nname = "{name}"\nseed = 0\n[data]\nformat = "csv"\nlabel = "y"\n'
            'members = "members.csv"\nnonmembers = "nonmembers.csv"\ntransfer = "transfer.csv"\ntest = "test.csv"\n'
            + extra)


@pytest.fixture
def csv_splits(tmp_path: Path) -> dict[str, Path]:
    return write_csv_splits(tmp_path)


@pytest.fixture
def tiny_csv_spec(tmp_path: Path, csv_splits) -> Path:
    """A spec on the CSV splits with tiny models (trains in a few seconds)."""
    path = tmp_path / "spec.toml"
    path.write_text(csv_spec_text(extra=TINY_MODELS))
    return path


@pytest.fixture
def tiny_builtin_spec(tmp_path: Path) -> Path:
    path = tmp_path / "builtin.toml"
    path.write_text(
        '[run]\nname = "tiny"\n[data]\nbuiltin = "purchase-synth"\n'
        "[data.sizes]\nmembers = 150\nnonmembers = 150\ntransfer = 400\ntest = 200\n"
        "[data.synth]\nfeatures = 80\nclasses = 10\nclusters = 5\n" + TINY_MODELS
    )
    return path


def run_cli(*args: str, cwd: Path):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "distillguard", *args], cwd=cwd, capture_output=True, text=True, timeout=900)


# The shared end-to-end spec; it checkpoints every epoch so the kill-and-resume test can
# compare its resumed run with this one byte for byte.
E2E_SPEC = (
    '[run]\nname = "tiny"\ncheckpoint_seconds = 0\n[data]\nbuiltin = "purchase-synth"\n'
    "[data.sizes]\nmembers = 150\nnonmembers = 150\ntransfer = 400\ntest = 200\n"
    "[data.synth]\nfeatures = 80\nclasses = 10\nclusters = 5\n" + TINY_MODELS
)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """One tiny end-to-end CLI run (with shadows and canaries) shared by the read-only tests."""
    folder = tmp_path_factory.mktemp("e2e")
    (folder / "spec.toml").write_text(E2E_SPEC)
    result = run_cli("run", "spec.toml", "--run-dir", "out", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "out"


@contextmanager
def single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    """Torch single-threaded for a module that opts in with ``pytestmark``: at tiny sizes a second
    thread only adds OpenMP synchronisation, which costs up to 5× on a loaded machine."""
    with single_thread():
        yield
