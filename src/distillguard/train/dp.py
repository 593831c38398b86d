"""DP-SGD teacher training (Abadi et al. 2016) with Opacus: pure, no run-folder I/O.

Every step samples a Poisson batch (each member kept with probability q), clips each
example's gradient to ``max_grad_norm``, adds N(0, σ²·max_grad_norm²) to the sum and
lets AdamW take the noisy mean. The accountant (PRV by default, Gopi et al. 2021; or
RDP, Mironov 2017) turns (σ, q, steps, δ) into ε.

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
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from distillguard import distributed
from distillguard.checkpoints import Checkpoint, snapshot
from distillguard.config import PrivacyConfig, TeacherConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard.errors import ConfigError
from distillguard.models.artifact import Classifier
from distillguard.models.classifiers import build_model
from distillguard.seeding import derive_seed
from distillguard.train.loop import Recipe, batch_order, make_optimizer, minibatch_parts
from distillguard.train.teacher import model_architecture

if TYPE_CHECKING:  # opacus is imported where it is used: only DP runs need it
    from opacus import PrivacyEngine
    from opacus.grad_sample import GradSampleModule
    from opacus.optimizers import DPOptimizer

ACCOUNTANTS = ("prv", "rdp")


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
        return self.delta if self.delta is not None else min(1.0 / (10 * n_train), 1e-5)


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
        """JSON-able record of the guarantee; :func:`recompute_epsilon` re-derives ε from it."""
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


def recompute_epsilon(record: dict[str, Any]) -> float:
    """ε of a :meth:`DPResult.privacy_record`, from a fresh Opacus accountant.

    The Poisson-subsampled Gaussian mechanism with noise multiplier σ and rate q,
    composed ``steps`` times, is all the accountant needs.
    """
    from opacus.accountants import create_accountant

    sigma, q, steps = float(record["noise_multiplier"]), float(record["sample_rate"]), int(record["steps"])
    if steps == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    accountant = create_accountant(mechanism=record["accountant"])
    accountant.history = [(sigma, q, steps)]
    with warnings.catch_warnings():
        if record["accountant"] == "prv":  # PRV sizes its grid with an RDP bound; that bound's order is moot
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(accountant.get_epsilon(delta=float(record["delta"])))


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
        return (engine, *engine.make_private(noise_multiplier=dp.noise_multiplier, **common))
    try:
        with warnings.catch_warnings():  # the σ search probes tiny σ, where RDP's top order is optimal
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            return (engine, *engine.make_private_with_epsilon(target_epsilon=dp.epsilon, target_delta=delta,
                                                              epochs=epochs, **common))
    except ValueError as error:
        if "budget is too low" not in str(error):
            raise
        raise ConfigError(f"DP-SGD cannot reach ε = {dp.epsilon} at δ = {delta:g} in {epochs} epochs ({error}); "
                          "raise epsilon, train fewer epochs or use smaller batches") from None


def _train_epoch(model: nn.Module, optimizer: DPOptimizer, loader: DataLoader, *,
                 exact_mean: bool, label_smoothing: float = 0.0, data_parallel: bool = True) -> tuple[float, int]:
    """One pass over ``loader``; returns (mean train loss, optimizer steps).

    Opacus divides the noisy gradient sum by the *expected* batch size. With Poisson
    sampling that is required (dividing by the realised size would leak it); with fixed
    batches (``exact_mean``) we divide by the realised size instead, a post-processing
    rescaling of the noisy sum that costs no privacy and matches ``loop.fit``'s mean loss.

    With the minibatch in parts (torchrun, or ``[run] batch_split``) see :func:`_step_in_parts`.
    """
    model.train()
    here = distributed.world() if data_parallel else distributed.World()
    split = data_parallel and distributed.batch_parts() > 1
    total, count, steps = 0.0, 0, 0
    for xb, yb in loader:  # (B, d), (B,); B varies under Poisson sampling and may be 0
        optimizer.zero_grad(set_to_none=True)
        if exact_mean:
            optimizer.expected_batch_size = len(yb)
        if split:
            loss_sum = _step_in_parts(model, optimizer, xb, yb, here=here, label_smoothing=label_smoothing)
        else:
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            with warnings.catch_warnings():  # Opacus' backward hooks fire on outputs: inputs need no grad
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
            optimizer.step()
            loss_sum = float(loss.detach()) * len(yb)
        steps += 1
        if len(yb):
            total += loss_sum
            count += len(yb)
    if split and here.size > 1:
        total = distributed.all_sum([total])[0]
    optimizer.zero_grad(set_to_none=True)  # drop per-sample gradients before evaluation
    return total / max(count, 1), steps


def _step_in_parts(model: nn.Module, optimizer: DPOptimizer, xb: torch.Tensor, yb: torch.Tensor, *,
                   here: distributed.World, label_smoothing: float) -> float:
    """One DP-SGD step with the minibatch's clipped-gradient sum computed in parts.

    Per-example clipping makes the clipped sum a plain sum over examples, so each part
    (each rank's contiguous share under torchrun, or every part in one process) clips and
    sums its own examples; the parts' sums are added (all-reduced across ranks), and then
    every rank adds the *same* Gaussian noise, drawn from the same seeded generator, once.
    That is Opacus' ``DPOptimizer.pre_step`` with the accumulation split, so the privacy
    accounting is unchanged: one noisy sum per step, at the same σ and sampling rate.
    Returns this process's sum of per-example losses.
    """
    loss_sum = 0.0
    parts = minibatch_parts(torch.arange(len(yb)), here)
    for k, part in enumerate(parts):
        loss = F.cross_entropy(model(xb[part]), yb[part], label_smoothing=label_smoothing)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        optimizer.clip_and_accumulate()  # p.summed_grad += this part's clipped per-example sum
        if k + 1 < len(parts):
            for p in optimizer.params:
                p.grad_sample = None  # the next part's backward starts a fresh per-example batch
        if len(part):
            loss_sum += float(loss.detach()) * len(part)
    if here.size > 1:
        for p in optimizer.params:
            torch.distributed.all_reduce(p.summed_grad, op=torch.distributed.ReduceOp.SUM)
    optimizer.add_noise()
    optimizer.scale_grad()  # ÷ expected batch size (one accumulated iteration: the last part's)
    if optimizer.step_hook:
        optimizer.step_hook(optimizer)  # the accountant records the step
    optimizer._is_last_step_skipped = False
    optimizer.original_optimizer.step()
    return loss_sum


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
    model = build_model(arch, seed=derive_seed(seed, "teacher", "init"))
    check_dp_compatible(model)
    X = torch.from_numpy(public_scaler.transform(members.X))  # (n, d) float32
    y = torch.from_numpy(members.y).long()  # (n,)
    recipe, delta = Recipe.from_config(cfg), dp.resolved_delta(len(members))
    streams = _Streams.seeded(seed)
    loader = _data_loader(X, y, recipe=recipe, poisson=dp.poisson_sampling, streams=streams)
    optimizer = make_optimizer(list(model.parameters()), recipe)
    engine, private_model, private_optimizer, private_loader = _make_private(
        model, optimizer, loader, dp=dp, epochs=recipe.epochs, delta=delta, noise=streams.noise)
    log, steps, start = [], 0, 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])  # the GradSampleModule wraps these very parameters
        optimizer.load_state_dict(saved["optimizer"])
        streams.restore(saved["streams"])
        engine.accountant.history = [tuple(entry) for entry in saved["accountant_history"]]
        log, steps, start = saved["log"], saved["steps"], saved["epoch"]
        for epoch in range(1, start + 1):
            if on_epoch is not None:
                on_epoch(epoch)
    for epoch in range(start, recipe.epochs):
        loss, epoch_steps = _train_epoch(private_model, private_optimizer, private_loader,
                                         exact_mean=not dp.poisson_sampling, label_smoothing=cfg.label_smoothing,
                                         data_parallel=data_parallel)
        steps += epoch_steps
        log.append({"epoch": epoch + 1, "train_loss": loss, "steps": steps})
        if checkpoint is not None and epoch + 1 < recipe.epochs and checkpoint.due():
            checkpoint.save({"epoch": epoch + 1, "model": snapshot(model.state_dict()),
                             "optimizer": optimizer.state_dict(), "streams": streams.states(),
                             "accountant_history": [list(entry) for entry in engine.accountant.history],
                             "log": log, "steps": steps}, point=f"epoch{epoch + 1}")
        if on_epoch is not None:
            on_epoch(epoch + 1)
    trained = private_model.to_standard_module().eval()
    (sigma, sample_rate, accounted_steps), = engine.accountant.history  # one (σ, q) for the whole run
    if accounted_steps != steps:
        raise RuntimeError(f"Opacus accounted {accounted_steps} steps but training took {steps}")
    record = {"noise_multiplier": sigma, "sample_rate": sample_rate, "steps": steps,
              "accountant": dp.accountant, "delta": delta}
    return DPResult(
        classifier=Classifier(trained, arch, schema, public_scaler), log=log, epsilon=recompute_epsilon(record),
        delta=delta, noise_multiplier=float(sigma), sample_rate=float(sample_rate), steps=steps,
        accountant=dp.accountant, max_grad_norm=dp.max_grad_norm, poisson_sampling=dp.poisson_sampling,
    )
