"""Resumable training state, so a killed run loses at most one checkpoint interval.

A stage that trains keeps its in-progress state in ``RUN/.checkpoints/STAGE/``: one file
per training loop (the teacher, the student, each group of stacked shadow models) with
the model and optimizer state, the minibatch generator's state, the checkpoint-selection
state and the epoch reached. Training resumes at the epoch after the checkpoint and, on
the same machine and thread count, ends bit for bit where an uninterrupted run would:
the state saved is everything the next epoch depends on.

The folder is tied to the stage's fingerprint (its inputs and params): a changed spec or
input starts afresh instead of resuming someone else's training. It is created owner-only
(teacher and shadow weights reveal membership) and removed when the stage completes.

Files are written with ``torch.save`` (temp file, fsync, rename) and read with
``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, never
arbitrary pickled objects.

Fault injection: ``DISTILLGUARD_FAILPOINT=STAGE/SLOT@EPOCH`` makes the process SIGKILL
itself right after that checkpoint is saved (``STAGE/SLOT@done`` after a finished
loop's result is saved), so tests can kill a run inside any training loop deterministically.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from distillguard import interrupts
from distillguard.distributed import world
from distillguard.errors import ArtifactError

FAILPOINT_ENV = "DISTILLGUARD_FAILPOINT"
_FINGERPRINT_FILE = "FINGERPRINT"


def failpoint(name: str) -> None:
    """SIGKILL this process if ``DISTILLGUARD_FAILPOINT`` names this point (tests only)."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Checkpoint:
    """One training loop's resumable state: a single file, replaced atomically.

    ``due()`` rate-limits saves to one per ``every_seconds`` (0: every epoch); a loop
    asks it at each epoch end and calls ``save`` when it says so.
    """

    def __init__(self, path: Path, *, name: str, every_seconds: float, rank_local: bool = False) -> None:
        self.path, self.name, self.every_seconds, self.rank_local = path, name, every_seconds, rank_local
        self._last = time.monotonic()

    def child(self, part: str) -> Checkpoint:
        """A checkpoint for a sub-loop (e.g. one group of stacked shadow models)."""
        return Checkpoint(self.path.with_name(f"{self.path.stem}.{part}.pt"), name=f"{self.name}.{part}",
                          every_seconds=self.every_seconds, rank_local=self.rank_local)

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_seconds

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none yet."""
        if not self.path.exists():
            return None
        try:
            with warnings.catch_warnings():  # a torn file may also warn about its pickle protocol
                warnings.simplefilter("ignore")
                return torch.load(self.path, weights_only=True, map_location="cpu")
        except Exception as error:  # noqa: BLE001 (a torn or foreign file: say which, never unpickle it)
            raise ArtifactError(f"{self.path}: unreadable checkpoint ({type(error).__name__}); delete it to "
                                f"restart this training loop from scratch") from None

    def save(self, state: dict[str, Any], *, point: str) -> None:
        """Write ``state`` atomically; ``point`` names it for fault injection (e.g. ``epoch3``).

        Under torchrun only rank 0 writes: the ranks of a data-parallel loop hold the same
        state. A ``rank_local`` checkpoint holds what this rank alone trains (its share of
        the shadows), so every rank writes its own.
        """
        if not (self.rank_local or world().is_main):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with interrupts.deferred():  # an interrupt inside torch.save's writer aborts the interpreter
            try:
                # owner-only like its folder: the state holds teacher and shadow weights
                with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
                    torch.save(state, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
        self._last = time.monotonic()
        failpoint(f"{self.name}@{point}")


class CheckpointStore:
    """The checkpoint folder of one stage run (see the module docstring)."""

    def __init__(self, root: Path, *, stage: str, every_seconds: float) -> None:
        self.root, self.stage, self.every_seconds = root, stage, every_seconds

    def open(self, fingerprint: str) -> bool:
        """Prepare the folder for this fingerprint; True if earlier state is kept to resume from."""
        marker = self.root / _FINGERPRINT_FILE
        if marker.exists() and marker.read_text().strip() == fingerprint and any(self.root.glob("*.pt")):
            return True
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, mode=0o700)
        os.chmod(self.root.parent, 0o700)
        marker.write_text(fingerprint + "\n")
        return False

    def slot(self, name: str, *, rank_local: bool = False) -> Checkpoint:
        """The checkpoint ``name``; ``rank_local``: one per rank of the current world (see ``save``)."""
        if rank_local and world().size > 1:
            here = world()
            name = f"{name}.rank{here.rank}of{here.size}"
        return Checkpoint(self.root / f"{name}.pt", name=f"{self.stage}/{name}", every_seconds=self.every_seconds,
                          rank_local=rank_local)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def snapshot(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies, so later in-place training steps do not change what is saved."""
    return {k: v.detach().clone() for k, v in state.items()}
