"""Membership-inference attacks behind one sklearn-style interface.

Hyper-parameters go to ``__init__``; ``fit(reference)`` calibrates on shadow/reference
models (a no-op for the threshold attacks); ``score(target)`` returns one float per
audited record, HIGHER = MORE LIKELY MEMBER, for every attack. Learned state ends in ``_``.

    attack = make_attack("lira_online", variance="global").fit(reference_signals)
    scores = attack.score(target_signals)  # (n,)

Attack ids (CONTRACT.md): ``loss``, ``confidence``, ``entropy``, ``modified_entropy``,
``lira_online``, ``lira_offline``, ``rmia``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, Self

import numpy as np
from scipy.special import expit, logsumexp
from scipy.stats import norm

from distillguard.audit.lira_fit import fit_gaussians, fit_medians, truncate
from distillguard.audit.signals import (
    ReferenceSignals,
    TargetSignals,
    entropy,
    lira_statistic,
    modified_entropy,
    true_class_logprob,
)

ATTACKS: dict[str, type[MembershipAttack]] = {}



class MembershipAttack(ABC):
    """Base of all attacks: ``fit(reference) -> self``, ``score(target) -> (n,)``, higher = member.

    Class attributes:
        name: the attack id used in specs and reports.
        requires_reference: whether ``fit`` must be called with shadow/reference signals.
    """

    name: ClassVar[str]
    requires_reference: ClassVar[bool] = False

    def fit(self, reference: ReferenceSignals | None = None) -> Self:  # noqa: ARG002 - no-op by default
        """Calibrate on reference models; threshold attacks need nothing and return ``self``."""
        return self

    @abstractmethod
    def score(self, target: TargetSignals) -> np.ndarray:
        """Membership score per audited record, shape ``(n,)``, higher = more likely member."""

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` hyper-parameters and their values (for the run record)."""
        return {name: getattr(self, name) for name in _init_parameters(type(self))}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def register(cls: type[MembershipAttack]) -> type[MembershipAttack]:
    """Class decorator adding an attack to :data:`ATTACKS` under ``cls.name``; duplicates raise."""
    if cls.name in ATTACKS:
        raise ValueError(f"attack name {cls.name!r} is already registered by {ATTACKS[cls.name].__name__}")
    ATTACKS[cls.name] = cls
    return cls


def make_attack(name: str, **params: Any) -> MembershipAttack:
    """Build the attack registered as ``name`` with hyper-parameters ``params``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or unknown parameter.
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid attacks: {', '.join(sorted(ATTACKS))}")
    cls = ATTACKS[name]
    allowed = _init_parameters(cls)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"attack {name!r} has no parameter(s) {', '.join(map(repr, unknown))}; "
                         f"its parameters: {', '.join(allowed) or 'none'}")
    return cls(**params)


# --- threshold attacks: one statistic of the target's own output ----------------------------


@register
class LossAttack(MembershipAttack):
    """Negated cross-entropy ``log p_y`` (Yeom et al. 2018): members have lower loss."""

    name = "loss"

    def score(self, target: TargetSignals) -> np.ndarray:
        return true_class_logprob(target.logits, target.labels)


@register
class ConfidenceAttack(MembershipAttack):
    """Probability of the true class ``p_y`` (Salem et al. 2019; Song & Mittal 2021)."""

    name = "confidence"

    def score(self, target: TargetSignals) -> np.ndarray:
        return np.exp(true_class_logprob(target.logits, target.labels))


@register
class EntropyAttack(MembershipAttack):
    """Negated prediction entropy (Salem et al. 2019): members get sharper predictions."""

    name = "entropy"

    def score(self, target: TargetSignals) -> np.ndarray:
        return -entropy(target.logits)


@register
class ModifiedEntropyAttack(MembershipAttack):
    """Negated modified entropy (Song & Mittal 2021, "Mentr"), label-aware."""

    name = "modified_entropy"

    def score(self, target: TargetSignals) -> np.ndarray:
        return -modified_entropy(target.logits, target.labels)


# --- LiRA (Carlini et al. 2022) ---------------------------------------------------------------


class _LiRA(MembershipAttack):
    """Likelihood-ratio attack on ``φ = log p_y − log(1 − p_y)`` (Carlini et al. 2022, Alg. 1).

    For each audited record, Gaussians are fitted to φ of the shadow models trained with
    (in) and without (out) it. ``"global"`` and ``"per_example"`` centre them on per-record
    MEANS; the global variance pools every record's residuals about its own mean, so the
    spread *between* records' means is not counted in it. A record with no in- (or out-)
    shadow falls back to the mean and total standard deviation of φ over all in- (or out-)
    pairs; a record with one falls back to the global variance.

    ``"fixed"`` is the reference code's ``fix_variance`` (tensorflow/privacy
    ``research/mi_lira_2021/plot.py``): per-record MEDIANS as centres and one σ, the
    ``np.std`` of all values of one side (between-record spread included). Online, the
    reference takes σ from the IN-values for both Gaussians (``std_out = np.std(dat_in)``);
    offline, from the OUT-values. ``"fixed_out"`` takes σ from the out-values on both
    sides online (the offline attack is then the same as ``"fixed"``). As the reference,
    every record keeps only its first ``k`` in- (out-) values, ``k`` the smallest count of
    any record; with paired shadows every pool record has the same counts.

    Args:
        variance: ``"global"`` (one pooled σ per side, recommended below 64 shadows),
            ``"per_example"``, ``"fixed"``, ``"fixed_out"``, or ``"auto"``: global when
            fewer than 64 shadows.
    """

    requires_reference = True
    AUTO_PER_EXAMPLE_FROM: ClassVar[int] = 64

    VARIANCES: ClassVar[tuple[str, ...]] = ("global", "per_example", "fixed", "fixed_out", "auto")

    def __init__(self, *, variance: Literal["global", "per_example", "fixed", "fixed_out", "auto"] = "auto") -> None:
        if variance not in self.VARIANCES:
            raise ValueError(f"The 'variance' parameter of {type(self).__name__} must be one of "
                             f"{', '.join(map(repr, self.VARIANCES))}. Got {variance!r} instead.")
        self.variance = variance

    _uses_in: ClassVar[bool] = True  # online fits in-Gaussians too; offline only out-Gaussians

    def fit(self, reference: ReferenceSignals | None = None) -> Self:
        reference = _require_reference(self, reference)
        phi = lira_statistic(reference.logits, reference.labels)  # (S, n)
        self.global_variance_ = self.variance == "global" or (
            self.variance == "auto" and reference.n_models < self.AUTO_PER_EXAMPLE_FROM)
        self.labels_ = reference.labels.copy()
        if self.variance in ("fixed", "fixed_out"):
            in_mask = reference.in_mask
            spread = phi[truncate(in_mask) if self._uses_in and self.variance == "fixed" else truncate(~in_mask)]
            self.out_ = fit_medians(phi, ~in_mask, spread=spread, side="out")
            if self._uses_in:
                self.in_ = fit_medians(phi, in_mask, spread=spread, side="in")
            return self
        self.out_ = fit_gaussians(phi, ~reference.in_mask, global_variance=self.global_variance_, side="out")
        if self._uses_in:
            self.in_ = fit_gaussians(phi, reference.in_mask, global_variance=self.global_variance_, side="in")
        return self

    def _target_statistic(self, target: TargetSignals) -> np.ndarray:
        _check_fitted(self, "labels_")
        _check_same_records(self.labels_, target.labels, what="audited records")
        return lira_statistic(target.logits, target.labels)  # (n,)


@register
class LiRAOnline(_LiRA):
    """Online LiRA: ``log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out)`` (Carlini et al. 2022, Alg. 1)."""

    name = "lira_online"

    def score(self, target: TargetSignals) -> np.ndarray:
        phi = self._target_statistic(target)
        (mu_in, sd_in), (mu_out, sd_out) = self.in_, self.out_
        return norm.logpdf(phi, mu_in, sd_in) - norm.logpdf(phi, mu_out, sd_out)


@register
class LiRAOffline(_LiRA):
    """Offline LiRA, one-sided: ``−log P(Φ_out > φ)`` with ``Φ_out ~ N(μ_out, σ_out)``.

    Carlini et al. 2022, offline variant: only out-shadows are needed. The one-sided test
    is used because the reference code's two-sided test is much weaker (REFERENCES.md).
    """

    name = "lira_offline"
    _uses_in = False

    def score(self, target: TargetSignals) -> np.ndarray:
        phi = self._target_statistic(target)
        mu_out, sd_out = self.out_
        return -norm.logsf(phi, mu_out, sd_out)


# --- RMIA (Zarifzadeh et al. 2024) -----------------------------------------------------------


@register
class RMIA(MembershipAttack):
    """Relative membership inference (Zarifzadeh et al. 2024, "Low-Cost High-Power Membership Inference Attacks").

    ``LR(x, z) = (Pr(x|θ)/Pr(x)) / (Pr(z|θ)/Pr(z))`` with ``Pr(·|θ) = p_y`` of the audited
    model and ``Pr(·)`` the mean ``p_y`` of the reference models; the score of ``x`` is the
    fraction of population records ``z`` with ``LR(x, z) > γ``, so it lies in [0, 1].

    Online, ``Pr(x)`` averages all reference models. Offline, it averages only those
    trained without ``x`` and is corrected as in the paper's offline setting:
    ``Pr(x) = ((1+a)/2)·Pr_out(x) + (1−a)/2``. The population ``z`` is out of every
    reference model, so ``Pr(z)`` averages all of them and, offline, gets the same
    correction (as in ml_privacy_meter's ``run_rmia``), keeping ``Pr(x)`` and ``Pr(z)`` on
    one scale. Offline, a record that no reference model left out falls back to the
    uncorrected mean over all (in-)models, which overestimates ``Pr(x)`` and so can only
    lower its score. Everything is computed in log space.

    Ties: against one fixed population the fraction is a non-decreasing step function of
    ``x``'s own ratio ``Pr(x|θ)/Pr(x)``, quantised to ``1/m``. A leaky model pushes many
    members above every population record, where the fraction saturates at 1 and they tie
    with each other (and with the few non-members that also beat every ``z``), which blurs
    exactly the low-FPR end that the gate reads. With ``tie_break`` (default) the score is
    ``(count + σ(log LR_x − log γ)) / (m + 1)``: ordered by the fraction first and, within
    one fraction, by ``x``'s own ratio, as a larger population would order them. It stays in
    [0, 1), keeps every strict order of the paper's score, and ``tie_break=False`` gives the
    paper's fraction exactly.

    Args:
        offline: use out-models only for ``Pr(x)`` (default True).
        a: offline correction in [0, 1] (ml_privacy_meter's default 0.3; tune on a
            reference model if possible).
        gamma: likelihood-ratio threshold ``γ > 0`` (default 1).
        tie_break: order records with equal fractions by their likelihood ratio (default True).
    """

    name = "rmia"
    requires_reference = True

    def __init__(self, *, offline: bool = True, a: float = 0.3, gamma: float = 1.0, tie_break: bool = True) -> None:
        for flag, value in (("offline", offline), ("tie_break", tie_break)):
            if not isinstance(value, bool):
                raise ValueError(f"The '{flag}' parameter of RMIA must be a bool. Got {value!r} instead.")
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"The 'a' parameter of RMIA must be in [0, 1]. Got {a!r} instead.")
        if not gamma > 0:
            raise ValueError(f"The 'gamma' parameter of RMIA must be > 0. Got {gamma!r} instead.")
        self.offline, self.a, self.gamma, self.tie_break = offline, float(a), float(gamma), tie_break

    def fit(self, reference: ReferenceSignals | None = None) -> Self:
        reference = _require_reference(self, reference)
        if not reference.has_population:
            raise ValueError("RMIA needs population records: give ReferenceSignals.population_logits and "
                             "population_labels (reference models' outputs on known non-members)")
        log_p = true_class_logprob(reference.logits, reference.labels)  # (S, n)
        log_p_z = true_class_logprob(reference.population_logits, reference.population_labels)  # (S, m)
        every = np.ones_like(reference.in_mask)
        if self.offline:
            out_mean = _log_mean_exp(log_p, ~reference.in_mask)  # (n,), NaN where no model left x out
            has_out = ~np.isnan(out_mean)
            self.log_pr_x_ = _log_mean_exp(log_p, every)  # the fallback, overwritten where possible
            self.log_pr_x_[has_out] = self._correct(out_mean[has_out])
            self.log_pr_z_ = self._correct(_log_mean_exp(log_p_z, np.ones_like(log_p_z, dtype=bool)))
        else:
            self.log_pr_x_ = _log_mean_exp(log_p, every)
            self.log_pr_z_ = _log_mean_exp(log_p_z, np.ones_like(log_p_z, dtype=bool))
        self.labels_ = reference.labels.copy()
        self.population_labels_ = reference.population_labels.copy()
        return self

    def score(self, target: TargetSignals) -> np.ndarray:
        _check_fitted(self, "log_pr_x_")
        if not target.has_population:
            raise ValueError("RMIA needs the audited model's outputs on the population records: give "
                             "TargetSignals.population_logits and population_labels")
        _check_same_records(self.labels_, target.labels, what="audited records")
        _check_same_records(self.population_labels_, target.population_labels, what="population records")
        log_ratio_x = true_class_logprob(target.logits, target.labels) - self.log_pr_x_  # (n,)
        log_ratio_z = true_class_logprob(target.population_logits, target.population_labels) - self.log_pr_z_  # (m,)
        # LR(x, z) > γ  ⇔  log_ratio_z < log_ratio_x − log γ; count such z by binary search.
        margin = log_ratio_x - np.log(self.gamma)
        below = np.searchsorted(np.sort(log_ratio_z), margin, side="left")
        if not self.tie_break:
            return below / log_ratio_z.size
        within = np.minimum(expit(margin), 1.0 - 1e-12)  # in [0, 1): never reaches the next count
        return (below + within) / (log_ratio_z.size + 1)

    def _correct(self, log_pr_out: np.ndarray) -> np.ndarray:
        """``log(((1+a)/2)·Pr_out + (1−a)/2)`` from ``log Pr_out``."""
        log_floor = np.log((1.0 - self.a) / 2.0) if self.a < 1.0 else -np.inf
        return np.logaddexp(np.log((1.0 + self.a) / 2.0) + log_pr_out, log_floor)


def _log_mean_exp(log_values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``log mean(exp(log_values[mask]))`` along axis 0; NaN where a column has no entry."""
    count = mask.sum(axis=0)
    with np.errstate(divide="ignore"):
        total = logsumexp(np.where(mask, log_values, -np.inf), axis=0)
        return np.where(count > 0, total - np.log(np.maximum(count, 1)), np.nan)


# --- helpers ------------------------------------------------------------------------------------


def _init_parameters(cls: type) -> list[str]:
    signature = inspect.signature(cls.__init__)
    return [p.name for p in signature.parameters.values() if p.name != "self"
            and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _require_reference(attack: MembershipAttack, reference: ReferenceSignals | None) -> ReferenceSignals:
    if not isinstance(reference, ReferenceSignals):
        raise ValueError(f"attack {attack.name!r} needs reference models: call fit(ReferenceSignals(...)); "
                         f"got {type(reference).__name__}")
    return reference


def _check_fitted(attack: MembershipAttack, attribute: str) -> None:
    if not hasattr(attack, attribute):
        raise RuntimeError(f"attack {attack.name!r} is not fitted: call fit(reference) before score(target)")


def _check_same_records(fitted: np.ndarray, given: np.ndarray, *, what: str) -> None:
    if fitted.shape != given.shape or not np.array_equal(fitted, given):
        raise ValueError(f"target and reference signals describe different {what}: labels differ "
                         f"(reference has {fitted.shape[0]}, target {given.shape[0]}); both must list "
                         "the same records in the same order")
