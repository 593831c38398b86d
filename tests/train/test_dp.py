"""DP-SGD teacher: the target ε is met, "equals plain training", determinism (golden ε: tests/privacy)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("opacus")

from distillguard.config import TeacherConfig  # noqa: E402
from distillguard.data.preprocessing import Standardizer  # noqa: E402
from distillguard.data.types import Schema, Split  # noqa: E402
from distillguard.errors import ConfigError  # noqa: E402
from distillguard.models.classifiers import build_model  # noqa: E402
from distillguard.privacy.dp_sgd import recompute_epsilon  # noqa: E402
from distillguard.seeding import derive_seed  # noqa: E402
from distillguard.train.dp import DPSettings, check_dp_compatible, train_teacher_dp  # noqa: E402
from distillguard.train.loop import Recipe, fit  # noqa: E402
from distillguard.train.teacher import model_architecture  # noqa: E402

N, D, C = 300, 20, 3
CFG = TeacherConfig(hidden=[16], epochs=4, batch_size=32, lr=1e-2)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


def mixture(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, D) float32 Gaussian mixture around C fixed centers, and (n,) labels."""
    centers = np.random.default_rng(123).normal(0.0, 1.5, (C, D))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    return (centers[y] + rng.normal(size=(n, D))).astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def data() -> dict:
    X, y = mixture(N, seed=0)
    public, _ = mixture(200, seed=1)
    schema = Schema([f"f{i}" for i in range(D)], list(range(C)), (D,))
    return {"members": Split(X=X, y=y, ids=np.arange(N)), "schema": schema, "scaler": Standardizer.fit(public)}


def train(data: dict, dp: DPSettings, *, seed: int = 0, cfg: TeacherConfig = CFG, **kwargs):
    return train_teacher_dp(data["members"], schema=data["schema"], cfg=cfg, dp=dp, seed=seed,
                            public_scaler=data["scaler"], **kwargs)


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_target_epsilon_is_met_and_recomputable(data, accountant):
    result = train(data, DPSettings(epsilon=4.0, accountant=accountant))
    batches = math.ceil(N / CFG.batch_size)
    assert result.epsilon <= 4.0
    assert result.epsilon > 3.9  # the σ search stops within Opacus' tolerance (0.01) of the target
    assert result.steps == CFG.epochs * batches and result.sample_rate == pytest.approx(1 / batches)
    assert result.delta == 1e-5  # min(1/(10·300), 1e-5)
    record = result.privacy_record()
    assert record["mechanism"] == "dp-sgd" and record["accountant"] == accountant
    assert recompute_epsilon(json.loads(json.dumps(record))) == pytest.approx(result.epsilon, rel=0.05)
    assert result.classifier.predict_proba(data["members"].X).shape == (N, C)


def test_given_noise_multiplier_gives_finite_epsilon(data):
    result = train(data, DPSettings(noise_multiplier=1.0, accountant="rdp", delta=1e-4))
    assert result.noise_multiplier == 1.0 and result.delta == 1e-4
    assert 0 < result.epsilon < math.inf
    more_noise = recompute_epsilon({**result.privacy_record(), "noise_multiplier": 2.0})
    assert more_noise < result.epsilon  # ε falls as σ grows


def test_no_noise_no_clipping_no_poisson_equals_plain_training(data):
    """Golden: σ = 0, C = ∞, fixed batches: DP-SGD is loop.fit (same init, batches, AdamW)."""
    seed = 7
    epochs = []
    result = train(data, DPSettings(noise_multiplier=0.0, max_grad_norm=1e12, poisson_sampling=False),
                   seed=seed, on_epoch=epochs.append)
    arch = model_architecture(CFG, data["schema"])
    plain = build_model(arch, seed=derive_seed(seed, "teacher", "init"))
    X = torch.from_numpy(data["scaler"].transform(data["members"].X))
    plain, log = fit(plain, X, torch.from_numpy(data["members"].y), loss_fn=F.cross_entropy,
                     recipe=Recipe.from_config(CFG), seed=derive_seed(seed, "teacher", "batches"))
    expected, got = params(plain), params(result.classifier.model)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=0, msg=name)
    assert [e["train_loss"] for e in result.log] == pytest.approx([e["train_loss"] for e in log], abs=1e-5)
    assert result.epsilon == math.inf and epochs == list(range(1, CFG.epochs + 1))


def test_same_seed_same_model_other_seed_differs(data):
    dp = DPSettings(noise_multiplier=1.0, accountant="rdp")
    global_state = torch.get_rng_state()
    first, second, other = train(data, dp, seed=3), train(data, dp, seed=3), train(data, dp, seed=4)
    assert torch.equal(torch.get_rng_state(), global_state)  # all randomness from seeded generators
    a, b, c = params(first.classifier.model), params(second.classifier.model), params(other.classifier.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.log == second.log


def test_trained_model_is_a_plain_module(data):
    model = train(data, DPSettings(noise_multiplier=1.0, accountant="rdp")).classifier.model
    assert type(model).__name__ == "MLP" and not model.training
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())


@pytest.mark.parametrize(("kwargs", "words"), [
    ({}, "exactly one of epsilon"),
    ({"epsilon": 1.0, "noise_multiplier": 1.0}, "exactly one of epsilon"),
    ({"epsilon": -1.0}, "'epsilon' parameter of DPSettings must be a finite float > 0"),
    ({"noise_multiplier": -0.5}, "'noise_multiplier' parameter"),
    ({"epsilon": 1.0, "delta": 1.5}, "'delta' parameter of DPSettings must be a float in (0, 1)"),
    ({"epsilon": 1.0, "max_grad_norm": 0.0}, "'max_grad_norm' parameter"),
    ({"epsilon": 1.0, "accountant": "gdp"}, "Got 'gdp' instead"),
])
def test_bad_settings_name_the_value(kwargs, words):
    with pytest.raises(ConfigError) as error:
        DPSettings(**kwargs)
    assert words in str(error.value)


def test_settings_are_keyword_only_and_delta_defaults_below_one_over_n():
    with pytest.raises(TypeError):
        DPSettings(4.0)  # type: ignore[misc]
    assert DPSettings(epsilon=1.0).resolved_delta(300) == 1e-5
    assert DPSettings(epsilon=1.0).resolved_delta(20_000) == pytest.approx(5e-6)
    assert DPSettings(epsilon=1.0, delta=1e-3).resolved_delta(300) == 1e-3


def test_batch_dependent_layers_are_rejected_with_a_fix():
    check_dp_compatible(build_model({"kind": "cnn", "input_shape": [1, 8, 8], "n_classes": 3, "hidden": [8],
                                     "channels": [4]}, seed=0))
    with pytest.raises(ConfigError, match="BatchNorm.*ModuleValidator.fix"):
        check_dp_compatible(nn.Sequential(nn.Linear(D, 8), nn.BatchNorm1d(8), nn.Linear(8, C)))


@pytest.mark.parametrize("poisson", [True, False])
def test_clipped_sums_in_parts_are_the_same_dp_sgd(data, poisson):
    """``batch_split`` (as torchrun ranks do) clips and sums each part of a minibatch; the noisy
    step, the accounting and so the model are those of one piece, to float rounding."""
    from distillguard import distributed

    dp = DPSettings(noise_multiplier=1.0, poisson_sampling=poisson)
    whole = train(data, dp)
    with distributed.splitting_batches(3):
        parts = train(data, dp)
    assert (parts.epsilon, parts.steps, parts.sample_rate) == (whole.epsilon, whole.steps, whole.sample_rate)
    for name, value in params(whole.classifier.model).items():
        torch.testing.assert_close(params(parts.classifier.model)[name], value, rtol=1e-4, atol=1e-5)
    # The noise is really added once per step: without it the model is a different one.
    quiet = train(data, DPSettings(noise_multiplier=0.0, poisson_sampling=poisson))
    first = lambda result: next(iter(params(result.classifier.model).values()))  # noqa: E731
    assert not torch.allclose(first(quiet), first(parts), atol=1e-3)
