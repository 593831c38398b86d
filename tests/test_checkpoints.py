"""Training interrupted after a checkpoint and started again ends exactly where it would have.

The interruption is an exception raised from ``on_epoch`` (called after the epoch's
checkpoint is saved), so the in-process test sees what a killed process leaves behind.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from distillguard.checkpoints import Checkpoint, CheckpointStore
from distillguard.errors import ArtifactError
from distillguard.models.classifiers import architecture, build_model
from distillguard.train.batched import fit_many
from distillguard.train.loop import Recipe, accuracy, fit

N, D, C = 200, 8, 3
RECIPE = Recipe(epochs=9, batch_size=16, lr=2e-2, weight_decay=1e-2)
ARCH = architecture(kind="mlp", input_shape=(D,), n_classes=C, hidden=[16], channels=[])
SEEDS = [3, 4, 5]


class Interrupted(Exception):
    pass


def _stop_at(epoch: int):
    def on_epoch(e: int) -> None:
        if e == epoch:
            raise Interrupted

    return on_epoch


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g)
    perm = torch.stack([torch.randperm(N, generator=g) for _ in SEEDS])
    return X, y, perm[:, :60].contiguous(), perm[:, 60:90].contiguous()


def _fit(X, y, *, checkpoint=None, on_epoch=None):
    model = build_model(ARCH, seed=1)
    return fit(model, X[:150], y[:150], loss_fn=F.cross_entropy, recipe=RECIPE, seed=7,
               validation=(X[150:], y[150:]), metric=accuracy, checkpoint=checkpoint, on_epoch=on_epoch)


def test_fit_resumed_after_interruption_is_bit_identical(tmp_path: Path, data):
    X, y, _, _ = data
    reference, ref_log = _fit(X, y)
    checkpoint = Checkpoint(tmp_path / "teacher.pt", name="t/teacher", every_seconds=0)
    with pytest.raises(Interrupted):
        _fit(X, y, checkpoint=checkpoint, on_epoch=_stop_at(4))
    assert torch.load(checkpoint.path, weights_only=True)["epoch"] == 4
    seen = []
    resumed, log = _fit(X, y, checkpoint=checkpoint, on_epoch=seen.append)
    assert seen == list(range(1, RECIPE.epochs + 1))  # progress bars count the restored epochs too
    assert log == ref_log
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_resuming_from_the_wrong_state_would_show(tmp_path: Path, data):
    """Control: a checkpoint from another seed changes the result, so the equality above means something."""
    X, y, _, _ = data
    reference, _ = _fit(X, y)
    checkpoint = Checkpoint(tmp_path / "teacher.pt", name="t/teacher", every_seconds=0)
    other = build_model(ARCH, seed=99)
    with pytest.raises(Interrupted):
        fit(other, X[:150], y[:150], loss_fn=F.cross_entropy, recipe=RECIPE, seed=8, checkpoint=checkpoint,
            validation=(X[150:], y[150:]), metric=accuracy, on_epoch=_stop_at(4))
    resumed, _ = _fit(X, y, checkpoint=checkpoint)
    assert not torch.equal(reference.state_dict()["net.0.weight"], resumed.state_dict()["net.0.weight"])


@pytest.mark.parametrize("batched", [True, False])
def test_fit_many_resumed_after_interruption_is_bit_identical(tmp_path: Path, data, batched):
    X, y, rows, val_rows = data
    common = dict(rows=rows, val_rows=val_rows, loss_fn=F.cross_entropy, recipe=RECIPE, seeds=SEEDS,
                  metric=accuracy, batched=batched)
    reference = fit_many(ARCH, X, y, **common)
    checkpoint = Checkpoint(tmp_path / "shadows.pt", name="audit/shadows", every_seconds=0)
    # Looped: epoch 4's worth of work is model 1's third epoch (model 0 finished); batched: mid-group.
    with pytest.raises(Interrupted):
        fit_many(ARCH, X, y, checkpoint=checkpoint, on_epoch=_stop_at(4), **common)
    saved = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert saved == (["shadows.group0.pt"] if batched else ["shadows.model0.pt", "shadows.model1.pt"])
    resumed = fit_many(ARCH, X, y, checkpoint=checkpoint, **common)
    for ref, res in zip(reference, resumed):
        for key in ref:
            assert torch.equal(ref[key], res[key]), key
    # Once finished, the group's result is what the file holds: a third call trains nothing.
    assert "states" in torch.load(tmp_path / saved[0], weights_only=True)


def test_checkpoint_rate_limit(tmp_path: Path):
    checkpoint = Checkpoint(tmp_path / "x.pt", name="s/x", every_seconds=3600)
    assert not checkpoint.due()
    assert Checkpoint(tmp_path / "y.pt", name="s/y", every_seconds=0).due()


def test_torn_checkpoint_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "teacher.pt"
    path.write_bytes(b"\x80\x04not a checkpoint")
    with pytest.raises(ArtifactError, match=r"teacher\.pt: unreadable checkpoint .*delete it"):
        Checkpoint(path, name="t/teacher", every_seconds=0).load()


def test_store_is_owner_only_and_tied_to_the_fingerprint(tmp_path: Path):
    store = CheckpointStore(tmp_path / ".checkpoints" / "teacher", stage="teacher", every_seconds=0)
    assert store.open("abc") is False
    assert (store.root.stat().st_mode & 0o777) == 0o700
    assert (store.root.parent.stat().st_mode & 0o777) == 0o700
    store.slot("teacher").save({"epoch": 1}, point="epoch1")
    assert store.open("abc") is True  # same stage inputs: resume
    assert store.open("def") is False  # changed inputs: start afresh
    assert not any(store.root.glob("*.pt"))


@pytest.fixture(autouse=True)
def _python_sigint_handler():
    """Ctrl-C as an interactive Python sees it, even where the suite was started with SIGINT
    ignored (a background job of a non-interactive shell inherits SIG_IGN, and Python then
    installs no KeyboardInterrupt handler)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class _InterruptingFile:
    """A file object whose ``at``-th write sends this process SIGINT: Ctrl-C mid-save."""

    def __init__(self, handle, at: int) -> None:
        self.handle, self.at, self.writes = handle, at, 0

    def write(self, data):
        self.writes += 1
        if self.writes == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


@pytest.mark.parametrize("at_write", [1, 3, 12, 26])
def test_ctrl_c_during_a_checkpoint_write_lands_after_it(tmp_path: Path, monkeypatch, at_write: int):
    """Without deferral the interrupt is raised inside torch.save's C++ writer callback:
    no checkpoint, a RuntimeError from the zip writer instead of a clean stop, or (CI,
    stop 24) the interpreter aborting at exit with the file closed under a live writer."""
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, handle: real_save(obj, _InterruptingFile(handle, at_write)))
    checkpoint = Checkpoint(tmp_path / "teacher.pt", name="t/teacher", every_seconds=0)
    state = {"weights": torch.arange(1000.0), "epoch": 3}
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(state, point="epoch3")
    saved = torch.load(checkpoint.path, weights_only=True)
    assert saved["epoch"] == 3 and torch.equal(saved["weights"], state["weights"])
    assert [p.name for p in tmp_path.iterdir()] == ["teacher.pt"]  # no temp file left behind
    assert checkpoint.path.stat().st_mode & 0o777 == 0o600  # weights reveal membership: owner-only
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_an_interrupted_write_outside_the_main_thread_is_not_held(tmp_path: Path):
    import threading

    from distillguard import interrupts

    seen = []

    def worker():
        with interrupts.deferred():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]
