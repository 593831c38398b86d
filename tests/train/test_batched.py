"""fit_many / predict_many against the single-model loop they must reproduce.

The reference for model s is ``loop.fit(build_model(arch, seed=seeds[s]), X[rows[s]],
targets[rows[s]], ..., seed=seeds[s], validation=(X[val_rows[s]], targets[val_rows[s]]))``.
Everything is tiny so the file runs in seconds on 2 cores.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from distillguard.models.classifiers import architecture, build_model
from distillguard.train import batched as batched_module
from distillguard.train import stacked as stacked_module
from distillguard.train.batched import fit_many, predict_many
from distillguard.train.kd import kd_loss
from distillguard.models.inference import predict_logits
from distillguard.train.loop import Recipe, accuracy, fit

N, D, C = 240, 10, 3
S, M, V = 4, 50, 30  # 50 rows with batch 16: three full batches and a last one of 2
SEEDS = [11, 12, 13, 14]
RECIPE = Recipe(epochs=8, batch_size=16, lr=2e-2, weight_decay=1e-2)
MLP_ARCH = architecture(kind="mlp", input_shape=(D,), n_classes=C, hidden=[16, 8], channels=[])
CNN_ARCH = architecture(kind="cnn", input_shape=(1, 8, 8), n_classes=C, hidden=[8], channels=[4, 4])


def _kd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    return kd_loss(student, teacher, temperature=2.0)


def _neg_kd(logits: torch.Tensor, teacher: torch.Tensor) -> float:
    return -float(_kd(logits, teacher))


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, D, generator=g)
    y = torch.randint(0, C, (N,), generator=g)
    rows = torch.stack([torch.randperm(N, generator=g)[: M + V] for _ in range(S)])
    return {"X": X, "y": y, "images": torch.randn(N, 64, generator=g), "teacher": 3 * torch.randn(N, C, generator=g),
            "rows": rows[:, :M].contiguous(), "val_rows": rows[:, M:].contiguous()}


def _reference(arch, X, targets, rows, val_rows, *, loss_fn, metric, recipe=RECIPE):
    """(state dicts, per-model training logs) from loop.fit, one model at a time."""
    states, logs = [], []
    for s, seed in enumerate(SEEDS[: len(rows)]):
        validation = (X[val_rows[s]], targets[val_rows[s]]) if val_rows is not None else None
        model, log = fit(build_model(arch, seed=seed), X[rows[s]], targets[rows[s]], loss_fn=loss_fn, recipe=recipe,
                         seed=seed, validation=validation, metric=metric)
        states.append(model.state_dict())
        logs.append(log)
    return states, logs


def _max_diff(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> float:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert list(x) == list(y)
    return max(float((x[k] - y[k]).abs().max()) for x, y in zip(a, b) for k in x)


def _selected_epochs(log: list[dict]) -> list[int]:
    return [e["epoch"] for e in log if e.get("selected")]


@pytest.mark.parametrize("with_validation", [False, True])
def test_mlp_cross_entropy_matches_loop(data, with_validation):
    val_rows = data["val_rows"] if with_validation else None
    expected, logs = _reference(MLP_ARCH, data["X"], data["y"], data["rows"], val_rows,
                                loss_fn=F.cross_entropy, metric=accuracy)
    got = fit_many(MLP_ARCH, data["X"], data["y"], rows=data["rows"], val_rows=val_rows, loss_fn=F.cross_entropy,
                   recipe=RECIPE, seeds=SEEDS, metric=accuracy)
    assert _max_diff(expected, got) < 1e-5
    if with_validation:  # the check is only meaningful if some model kept an earlier epoch
        assert any(_selected_epochs(log)[-1] < RECIPE.epochs for log in logs)


def test_kd_loss_with_teacher_logits_matches_loop(data):
    expected, logs = _reference(MLP_ARCH, data["X"], data["teacher"], data["rows"], data["val_rows"],
                                loss_fn=_kd, metric=_neg_kd)
    got = fit_many(MLP_ARCH, data["X"], data["teacher"], rows=data["rows"], val_rows=data["val_rows"], loss_fn=_kd,
                   recipe=RECIPE, seeds=SEEDS, metric=_neg_kd)
    assert _max_diff(expected, got) < 1e-5


@pytest.mark.parametrize("batched", [None, True])
def test_cnn_matches_loop(data, batched):
    recipe = Recipe(epochs=4, batch_size=16, lr=1e-2, weight_decay=0.0)
    expected, _ = _reference(CNN_ARCH, data["images"], data["y"], data["rows"], data["val_rows"],
                             loss_fn=F.cross_entropy, metric=accuracy, recipe=recipe)
    got = fit_many(CNN_ARCH, data["images"], data["y"], rows=data["rows"], val_rows=data["val_rows"],
                   loss_fn=F.cross_entropy, recipe=recipe, seeds=SEEDS, metric=accuracy, batched=batched)
    assert _max_diff(expected, got) < 1e-5


def test_looped_path_is_the_reference(data):
    kwargs = dict(rows=data["rows"], val_rows=data["val_rows"], loss_fn=F.cross_entropy, recipe=RECIPE,
                  seeds=SEEDS, metric=accuracy)
    looped = fit_many(MLP_ARCH, data["X"], data["y"], batched=False, **kwargs)
    stacked = fit_many(MLP_ARCH, data["X"], data["y"], batched=True, **kwargs)
    expected, _ = _reference(MLP_ARCH, data["X"], data["y"], data["rows"], data["val_rows"],
                             loss_fn=F.cross_entropy, metric=accuracy)
    assert _max_diff(expected, looped) == 0.0
    assert _max_diff(looped, stacked) < 1e-5


def test_groups_do_not_change_the_result(data, monkeypatch):
    """The fused optimizer steps every element through its vector path (stacked.FusedAdamW), so a
    model's update does not depend on which models share its stack: Ray chunks and torchrun
    shares give the numbers of one call, bit for bit."""
    kwargs = dict(rows=data["rows"], val_rows=data["val_rows"], loss_fn=F.cross_entropy, recipe=RECIPE,
                  seeds=SEEDS, metric=accuracy)
    whole = fit_many(MLP_ARCH, data["X"], data["y"], **kwargs)
    for size in (1, 3):  # one model per stack; groups of 2 and 2
        monkeypatch.setattr(batched_module, "GROUP_SIZE", size)
        assert _max_diff(whole, fit_many(MLP_ARCH, data["X"], data["y"], **kwargs)) == 0.0


def test_exact_path_reproduces_the_loop_bit_for_bit(data, monkeypatch):
    """FAST = False (the loop's AdamW on cache-sized slices, one loss call per model) is the loop to the
    batched GEMM's rounding (bit for bit on the benchmark's shapes; these tiny odd ones round
    1e-7 apart), however the models are grouped and the optimizer sliced; the fast path is within 1e-5."""
    kwargs = dict(rows=data["rows"], val_rows=data["val_rows"], loss_fn=F.cross_entropy, recipe=RECIPE,
                  seeds=SEEDS, metric=accuracy)
    expected, _ = _reference(MLP_ARCH, data["X"], data["y"], data["rows"], data["val_rows"],
                             loss_fn=F.cross_entropy, metric=accuracy)
    fast = fit_many(MLP_ARCH, data["X"], data["y"], **kwargs)
    monkeypatch.setattr(batched_module, "FAST", False)
    assert _max_diff(expected, fit_many(MLP_ARCH, data["X"], data["y"], **kwargs)) < 1e-6
    monkeypatch.setattr(batched_module, "GROUP_SIZE", 3)  # groups of 2 and 2
    monkeypatch.setattr(stacked_module, "ADAMW_SLICE", 37)  # slices straddle tensors and models
    assert _max_diff(expected, fit_many(MLP_ARCH, data["X"], data["y"], **kwargs)) < 1e-6
    assert _max_diff(expected, fast) < 1e-5


def test_vmapped_loss_gives_each_model_its_own_gradient():
    from distillguard.train.stacked import model_losses, summed_loss

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 7, C, generator=g, requires_grad=True)
    for loss_fn, targets in ((F.cross_entropy, torch.randint(0, C, (5, 7), generator=g)),
                             (_kd, 3 * torch.randn(5, 7, C, generator=g))):
        per_model, = torch.autograd.grad(model_losses(loss_fn, logits, targets).sum(), logits)
        vmapped, = torch.autograd.grad(summed_loss(loss_fn, logits, targets, vmapped=True), logits)
        assert torch.equal(per_model, vmapped)
        alone, = torch.autograd.grad(loss_fn(logits[2], targets[2]), logits)
        assert torch.equal(alone[2], vmapped[2]) and not alone[3].any()


@pytest.mark.parametrize(("batched", "group_size"), [(True, None), (True, 3), (False, None)])
def test_on_epoch_counts_epochs_once_each(data, monkeypatch, batched, group_size):
    monkeypatch.setattr(batched_module, "GROUP_SIZE", group_size)
    seen: list[int] = []
    calls = [0]  # loss_fn calls so far: one per model per step, whatever the path

    def counting_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return F.cross_entropy(logits, y)

    at: list[int] = []
    fit_many(MLP_ARCH, data["X"], data["y"], rows=data["rows"], loss_fn=counting_loss,
             recipe=Recipe(epochs=3, batch_size=16, lr=1e-2, weight_decay=0.0), seeds=SEEDS, batched=batched,
             on_epoch=lambda e: (seen.append(e), at.append(calls[0])))
    assert seen == [1, 2, 3]
    # Each report comes when that share of the work is done (a bar must not jump to the end).
    total = calls[0]
    assert all(abs(done / total - e / 3) <= 1 / len(SEEDS) for e, done in zip(seen, at)), (at, total)


class _DataDependent(nn.Module):
    """A model vmap cannot run: Python control flow on a tensor's value."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(D, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return out if bool(out.sum() > -1e9) else -out


def test_unvmappable_model_falls_back_to_the_loop(data, monkeypatch):
    def build(arch, *, seed):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _DataDependent()

    monkeypatch.setattr(batched_module, "build_model", build)
    kwargs = dict(rows=data["rows"], loss_fn=F.cross_entropy, recipe=Recipe(3, 16, 1e-2, 0.0), seeds=SEEDS)
    fallback = fit_many({"kind": "custom", "n_classes": C}, data["X"], data["y"], **kwargs)
    for s, seed in enumerate(SEEDS):
        model, _ = fit(build(None, seed=seed), data["X"][data["rows"][s]], data["y"][data["rows"][s]],
                       loss_fn=F.cross_entropy, recipe=kwargs["recipe"], seed=seed)
        assert _max_diff([model.state_dict()], [fallback[s]]) == 0.0
    with pytest.raises(RuntimeError, match="cannot be vmapped"):
        fit_many({"kind": "custom", "n_classes": C}, data["X"], data["y"], batched=True, **kwargs)


@pytest.mark.parametrize(("arch", "key"), [(MLP_ARCH, "X"), (CNN_ARCH, "images")])
def test_predict_many_matches_predict_logits(data, arch, key):
    states = [build_model(arch, seed=seed).state_dict() for seed in SEEDS]
    X = data[key]
    expected = []
    for state in states:
        model = build_model(arch, seed=0)
        model.load_state_dict(state)
        expected.append(predict_logits(model, X))
    expected = torch.stack(expected)
    for batched in (None, False):
        got = predict_many(arch, states, X, batched=batched)
        assert got.shape == (S, N, C)
        assert float((got - expected).abs().max()) < 1e-5
    assert predict_many(arch, states, X[:0]).shape == (S, 0, C)


def test_bad_shapes_are_rejected(data):
    kwargs = dict(loss_fn=F.cross_entropy, recipe=RECIPE)
    with pytest.raises(ValueError, match="seeds"):
        fit_many(MLP_ARCH, data["X"], data["y"], rows=data["rows"], seeds=SEEDS[:2], **kwargs)
    with pytest.raises(ValueError, match="rows must be"):
        fit_many(MLP_ARCH, data["X"], data["y"], rows=data["rows"][0], seeds=SEEDS[:1], **kwargs)
    with pytest.raises(ValueError, match="val_rows"):
        fit_many(MLP_ARCH, data["X"], data["y"], rows=data["rows"], seeds=SEEDS, val_rows=data["val_rows"][:2],
                 metric=accuracy, **kwargs)
    assert fit_many(MLP_ARCH, data["X"], data["y"], rows=data["rows"][:0], seeds=[], **kwargs) == []


@pytest.mark.parametrize("batched", [True, False], ids=["stacked", "looped"])
def test_with_last_returns_the_selected_states_unchanged_and_the_last_epochs(data, batched, tmp_path):
    """The audit's two shadow recipes from one training: the selected states exactly as
    without ``with_last`` (the "replay" numbers do not move), and the last epochs exactly as
    a training without checkpoint selection."""
    from distillguard.checkpoints import Checkpoint

    kwargs = dict(rows=data["rows"], loss_fn=F.cross_entropy, recipe=RECIPE, seeds=SEEDS, batched=batched)
    selected = fit_many(MLP_ARCH, data["X"], data["y"], val_rows=data["val_rows"], metric=accuracy, **kwargs)
    unselected = fit_many(MLP_ARCH, data["X"], data["y"], **kwargs)
    assert _max_diff(selected, unselected) > 1e-3  # selection kept an earlier epoch for some model
    slot = Checkpoint(tmp_path / "fit.pt", name="fit", every_seconds=0)
    for _ in range(2):  # the second call reads both lists back from the finished checkpoint
        best, last = fit_many(MLP_ARCH, data["X"], data["y"], val_rows=data["val_rows"], metric=accuracy,
                              with_last=True, checkpoint=slot, **kwargs)
        assert _max_diff(best, selected) == 0.0
        assert _max_diff(last, unselected) == 0.0
