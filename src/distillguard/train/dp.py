"""DP-SGD teacher training (Abadi et al. 2016) with Opacus: pure, no run-folder I/O.

Every step samples a Poisson batch (each member kept with probability q), clips each
example's gradient to ``max_grad_norm``, adds N(0, σ²·max_grad_norm²) to the sum and
lets AdamW take the noisy mean. The accountant (PRV by default, Gopi et al. 2021; or
RDP, Mironov 2017) turns (σ, q, steps, δ) into ε; that maths lives in
:mod:`distillguard.privacy.dp_sgd`, this module trains.

Two choices keep the guarantee honest:

* **No checkpoint selection on private data.** ``train_teacher`` keeps the epoch with
  the best accuracy on held-out members; that choice reads private records outside the
  DP-SGD accounting, so the ε reported would not cover the model released. Here every
  member is trained on for ``cfg.epochs`` epochs and the last model is kept
  (``cfg.val_fraction`` is ignored).
* **Public preprocessing.** Features are standardized with ``public_scaler``, whose
  statistics come from public data; a scaler fitted on members would leak them outside
  the accounting too.

Randomness is explicit: initialization, batch sampling and noise each draw from their
own seeded stream (``derive_seed(seed, "teacher", ...)``), so a run is a pure function
of (data, config, settings, seed). ``secure_mode`` is off: seeded noise is what makes
runs reproducible, and is not safe against floating-point attacks on the noise
(Mironov 2012); a production release should retrain with ``secure_mode=True``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from distillguard.checkpoints import Checkpoint, snapshot
from distillguard.config import PrivacyConfig, TeacherConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard.errors import ConfigError
from distillguard.models.artifact import Classifier
from distillguard.models.classifiers import build_model
from distillguard.privacy.delta import default_delta
from distillguard.privacy.dp_sgd import ACCOUNTANTS, noise_multiplier_for_epsilon, recompute_epsilon
from distillguard.seeding import derive_seed
from distillguard.train.dp_steps import train_epoch_dp
from distillguard.train.loop import Recipe, batch_order, make_optimizer
from distillguard.train.teacher import model_architecture

if TYPE_CHECKING:  # opacus is imported where it is used: only DP runs need it
    from opacus import PrivacyEngine
    from opacus.grad_sample import GradSampleModule
    from opacus.optimizers import DPOptimizer

@dataclass(frozen=True, kw_only=True)
class DPSettings:
    """How private DP-SGD must be. Give exactly one of ``epsilon`` and ``noise_multiplier``.

    Attributes:
        epsilon: target ε; the noise multiplier is solved for (Opacus
            ``make_private_with_epsilon``) so that the run ends at ε ≤ target.
        noise_multiplier: σ, the noise standard deviation in units of ``max_grad_norm``;
            ε is then computed after training.
        delta: target δ; None means min(1 / (10·n_train), 1e-5), well below 1/n.
        max_grad_norm: per-example L2 clipping bound C.
        accountant: "prv" (tight numerical accountant, Gopi et al. 2021) or "rdp"
            (Rényi DP, Mironov 2017; looser, fast).
        poisson_sampling: sample batches by Poisson sampling, which the accountants
            assume. False uses ``loop.fit``'s shuffled fixed-size batches, which the
            accounting only approximates (kept for the "equals plain training" check).
    """

    epsilon: float | None = None
    noise_multiplier: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: Literal["prv", "rdp"] = "prv"
    poisson_sampling: bool = True

    @classmethod
    def from_privacy(cls, privacy: PrivacyConfig) -> DPSettings:
        """The DP-SGD settings of a spec's ``[privacy]`` section (mechanism = "dp-sgd")."""
        return cls(epsilon=privacy.epsilon, noise_multiplier=privacy.noise_multiplier, delta=privacy.delta,
                   max_grad_norm=privacy.max_grad_norm, accountant=privacy.accountant,
                   poisson_sampling=privacy.poisson_sampling)

    def __post_init__(self) -> None:
        problems = []
        if (self.epsilon is None) == (self.noise_multiplier is None):
            problems.append(
                "DPSettings needs exactly one of epsilon (a target; the noise multiplier is solved for) "
                f"or noise_multiplier (given; ε is computed). Got epsilon={self.epsilon}, "
                f"noise_multiplier={self.noise_multiplier} instead."
            )
        finite = math.isfinite
        checks = [
            ("epsilon", self.epsilon is None or (finite(self.epsilon) and self.epsilon > 0),
             "a finite float > 0 or None"),
            ("noise_multiplier", self.noise_multiplier is None or (finite(self.noise_multiplier)
                                                                   and self.noise_multiplier >= 0),
             "a finite float >= 0 or None"),
            ("delta", self.delta is None or 0 < self.delta < 1, "a float in (0, 1) or None"),
            ("max_grad_norm", finite(self.max_grad_norm) and self.max_grad_norm > 0, "a finite float > 0"),
            ("accountant", self.accountant in ACCOUNTANTS, " or ".join(f'"{a}"' for a in ACCOUNTANTS)),
        ]
        problems += [f"The {name!r} parameter of DPSettings must be {want}. Got {getattr(self, name)!r} instead."
                     for name, ok, want in checks if not ok]
        if problems:
            raise ConfigError("; ".join(problems))

    def resolved_delta(self, n_train: int) -> float:
        """δ as given, or min(1 / (10·n_train), 1e-5)."""
        return self.delta if self.delta is not None else default_delta(n_train)


@dataclass(frozen=True)
class DPResult:
    """A DP-SGD teacher and the numbers that bound its privacy loss.

    Attributes:
        classifier: the last-epoch model with the public scaler.
        log: per-epoch entries {"epoch", "train_loss", "steps"}.
        epsilon: ε spent at ``delta`` (inf when the noise multiplier is 0).
        sample_rate: q, the Poisson sampling probability (1 / batches per epoch).
        steps: noisy optimizer steps taken.
    """

    classifier: Classifier
    log: list[dict]
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    accountant: str
    max_grad_norm: float
    poisson_sampling: bool = True

    def privacy_record(self) -> dict[str, Any]:
        """JSON-able record of the guarantee; :func:`~distillguard.privacy.dp_sgd.recompute_epsilon` re-derives ε."""
        import opacus

        return {
            "mechanism": "dp-sgd",
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "accountant": self.accountant,
            "max_grad_norm": self.max_grad_norm,
            "poisson_sampling": self.poisson_sampling,
            "checkpoint": "last epoch (no selection on private data)",
            "opacus_version": opacus.__version__,
        }


def check_dp_compatible(model: nn.Module) -> None:
    """Raise ConfigError listing every reason Opacus cannot train ``model`` privately.

    Layers with buffers (BatchNorm) mix examples of a batch, so per-example gradients,
    and with them per-example clipping, are undefined.
    """
    from opacus.grad_sample import GradSampleModule
    from opacus.validators import ModuleValidator

    was_training = model.training
    model.train()
    errors = [*ModuleValidator.validate(model, strict=False), *GradSampleModule.validate(model, strict=False)]
    model.train(was_training)
    if errors:
        reasons = "; ".join(dict.fromkeys(str(e).strip() for e in errors))
        raise ConfigError(
            f"DP-SGD cannot train this {type(model).__name__}: {reasons}. Use a model without batch-dependent "
            "layers (distillguard's mlp and cnn kinds qualify), or replace them (opacus ModuleValidator.fix "
            "turns BatchNorm into GroupNorm)."
        )


class _ShuffledBatches(Sampler[list[int]]):
    """``loop.fit``'s minibatches: a fresh seeded permutation per epoch, cut into batch_size chunks."""

    def __init__(self, n: int, *, recipe: Recipe, generator: torch.Generator) -> None:
        super().__init__()
        self.n, self.recipe, self.generator = n, recipe, generator

    def __len__(self) -> int:
        return math.ceil(self.n / self.recipe.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for index in batch_order(self.n, recipe=self.recipe, generator=self.generator):
            yield index.tolist()


@dataclass(frozen=True)
class _Streams:
    """Every random stream of a DP-SGD training: seeded here, saved in checkpoints."""

    sampling: torch.Generator  # Poisson masks (Opacus' DPDataLoader draws from the loader's generator)
    batches: torch.Generator  # fixed-size shuffled batches when Poisson sampling is off
    noise: torch.Generator  # the Gaussian noise added to clipped gradient sums

    @classmethod
    def seeded(cls, seed: int) -> _Streams:
        return cls(torch.Generator().manual_seed(derive_seed(seed, "teacher", "dp", "sampling")),
                   torch.Generator().manual_seed(derive_seed(seed, "teacher", "batches")),  # train_teacher's stream
                   torch.Generator().manual_seed(derive_seed(seed, "teacher", "dp", "noise")))

    def states(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).get_state() for name in ("sampling", "batches", "noise")}

    def restore(self, states: dict[str, torch.Tensor]) -> None:
        for name, state in states.items():
            getattr(self, name).set_state(state)


def _data_loader(X: torch.Tensor, y: torch.Tensor, *, recipe: Recipe, poisson: bool, streams: _Streams) -> DataLoader:
    """The loader handed to Opacus; with Poisson sampling Opacus replaces its sampler.

    Opacus' ``DPDataLoader`` draws its Poisson masks from this loader's generator, so a
    seeded generator makes sampling reproducible without touching the global RNG.
    """
    dataset = TensorDataset(X, y)
    if poisson:
        return DataLoader(dataset, batch_size=recipe.batch_size, generator=streams.sampling)
    batches = _ShuffledBatches(len(X), recipe=recipe, generator=streams.batches)
    return DataLoader(dataset, batch_sampler=batches, generator=streams.sampling)


def _make_private(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *,
                  dp: DPSettings, epochs: int, delta: float,
                  noise: torch.Generator) -> tuple[PrivacyEngine, GradSampleModule, DPOptimizer, DataLoader]:
    """Wrap model, optimizer and loader with Opacus; returns (engine, model, optimizer, loader)."""
    from opacus import PrivacyEngine

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG turned off.*")
        engine = PrivacyEngine(accountant=dp.accountant, secure_mode=False)
    common = dict(module=model, optimizer=optimizer, data_loader=loader, max_grad_norm=dp.max_grad_norm,
                  poisson_sampling=dp.poisson_sampling, noise_generator=noise, grad_sample_mode="hooks")
    if dp.epsilon is None:
        sigma = dp.noise_multiplier
    else:  # what make_private_with_epsilon does: solve σ at Opacus' rate 1 / batches per epoch
        sigma = noise_multiplier_for_epsilon(target_epsilon=dp.epsilon, delta=delta, sample_rate=1 / len(loader),
                                             epochs=epochs, accountant=dp.accountant)
    return (engine, *engine.make_private(noise_multiplier=sigma, **common))


@dataclass(frozen=True)
class _PrivateTraining:
    """One DP-SGD run's Opacus-wrapped objects and the plain ones under them (what checkpoints save).

    The ``GradSampleModule`` wraps ``model``'s very parameters and the ``DPOptimizer``
    wraps ``optimizer``, so saving and loading the plain ones saves and loads the run.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    streams: _Streams
    engine: PrivacyEngine
    private_model: GradSampleModule
    private_optimizer: DPOptimizer
    private_loader: DataLoader

    @classmethod
    def start(cls, members: Split, *, arch: dict, recipe: Recipe, dp: DPSettings, delta: float, seed: int,
              public_scaler: Standardizer) -> _PrivateTraining:
        """A fresh model (``derive_seed(seed, "teacher", "init")``) on the scaled members, made private."""
        model = build_model(arch, seed=derive_seed(seed, "teacher", "init"))
        check_dp_compatible(model)
        X = torch.from_numpy(public_scaler.transform(members.X))  # (n, d) float32
        y = torch.from_numpy(members.y).long()  # (n,)
        streams = _Streams.seeded(seed)
        loader = _data_loader(X, y, recipe=recipe, poisson=dp.poisson_sampling, streams=streams)
        optimizer = make_optimizer(list(model.parameters()), recipe)
        wrapped = _make_private(model, optimizer, loader, dp=dp, epochs=recipe.epochs, delta=delta, noise=streams.noise)
        return cls(model, optimizer, streams, *wrapped)

    def state(self, *, epoch: int, log: list[dict], steps: int) -> dict[str, Any]:
        """What a checkpoint after ``epoch`` epochs holds: enough to resume exactly."""
        return {"epoch": epoch, "model": snapshot(self.model.state_dict()),
                "optimizer": self.optimizer.state_dict(), "streams": self.streams.states(),
                "accountant_history": [list(entry) for entry in self.engine.accountant.history],
                "log": log, "steps": steps}

    def restore(self, saved: dict[str, Any]) -> tuple[list[dict], int, int]:
        """Load a :meth:`state` in place; returns (log, steps, epochs done)."""
        self.model.load_state_dict(saved["model"])  # the GradSampleModule wraps these very parameters
        self.optimizer.load_state_dict(saved["optimizer"])
        self.streams.restore(saved["streams"])
        self.engine.accountant.history = [tuple(entry) for entry in saved["accountant_history"]]
        return saved["log"], saved["steps"], saved["epoch"]

    def result(self, *, log: list[dict], steps: int, arch: dict, schema: Schema, public_scaler: Standardizer,
               dp: DPSettings, delta: float) -> DPResult:
        """The trained plain model and its ε, after checking Opacus accounted every step taken."""
        trained = self.private_model.to_standard_module().eval()
        (sigma, sample_rate, accounted_steps), = self.engine.accountant.history  # one (σ, q) for the whole run
        if accounted_steps != steps:
            raise RuntimeError(f"Opacus accounted {accounted_steps} steps but training took {steps}")
        record = {"noise_multiplier": sigma, "sample_rate": sample_rate, "steps": steps,
                  "accountant": dp.accountant, "delta": delta}
        return DPResult(
            classifier=Classifier(trained, arch, schema, public_scaler), log=log, epsilon=recompute_epsilon(record),
            delta=delta, noise_multiplier=float(sigma), sample_rate=float(sample_rate), steps=steps,
            accountant=dp.accountant, max_grad_norm=dp.max_grad_norm, poisson_sampling=dp.poisson_sampling,
        )


def train_teacher_dp(
    members: Split,
    *,
    schema: Schema,
    cfg: TeacherConfig,
    dp: DPSettings,
    seed: int,
    public_scaler: Standardizer,
    on_epoch: Callable[[int], None] | None = None,
    checkpoint: Checkpoint | None = None,
    data_parallel: bool = True,
) -> DPResult:
    """Train a teacher on all members with DP-SGD (Abadi et al. 2016, Alg. 1) via Opacus.

    Args:
        members: the private training records; every one is trained on.
        cfg: architecture and recipe (AdamW, ``epochs``, ``batch_size``, ``lr``,
            ``weight_decay``); ``val_fraction`` is ignored (see the module docstring).
        dp: the privacy target or noise level.
        seed: the run seed; streams ``derive_seed(seed, "teacher", ...)``.
        public_scaler: standardization fitted on public data only.
        on_epoch: called with the epoch number after each epoch.
        checkpoint: periodic saves (model, optimizer, the three random streams, the
            accountant's history) to resume from exactly, as ``loop.fit`` does.
        data_parallel: under torchrun, share each minibatch among the ranks (False: this
            rank trains the model alone, e.g. one of the shadows it was given).

    Returns:
        The last-epoch classifier and its (ε, δ) with everything needed to recompute ε.

    Raises:
        ConfigError: unreachable ε target, model Opacus cannot handle, unlabeled members.
    """
    if members.y is None:
        raise ConfigError("DP-SGD teacher training needs labeled members (members.y is None)")
    arch = model_architecture(cfg, schema)
    recipe, delta = Recipe.from_config(cfg), dp.resolved_delta(len(members))
    run = _PrivateTraining.start(members, arch=arch, recipe=recipe, dp=dp, delta=delta, seed=seed,
                                 public_scaler=public_scaler)
    log, steps, start = [], 0, 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        log, steps, start = run.restore(saved)
        for epoch in range(1, start + 1):
            if on_epoch is not None:
                on_epoch(epoch)
    for epoch in range(start, recipe.epochs):
        loss, epoch_steps = train_epoch_dp(run.private_model, run.private_optimizer, run.private_loader,
                                           exact_mean=not dp.poisson_sampling, label_smoothing=cfg.label_smoothing,
                                           data_parallel=data_parallel)
        steps += epoch_steps
        log.append({"epoch": epoch + 1, "train_loss": loss, "steps": steps})
        if checkpoint is not None and epoch + 1 < recipe.epochs and checkpoint.due():
            checkpoint.save(run.state(epoch=epoch + 1, log=log, steps=steps), point=f"epoch{epoch + 1}")
        if on_epoch is not None:
            on_epoch(epoch + 1)
    return run.result(log=log, steps=steps, arch=arch, schema=schema, public_scaler=public_scaler, dp=dp, delta=delta)
