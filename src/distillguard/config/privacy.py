"""``[privacy]``: the formal mechanism (DP-SGD or PATE) and its budget.

PATE's fields get their defaults only under ``mechanism = "pate"``; elsewhere they stay
unset, so a setting of the other mechanism is an error rather than silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from distillguard.config.base import Section
from distillguard.privacy.delta import default_delta

PATE_FIELDS = ("teachers", "sigma", "threshold", "sigma_threshold", "data_dependent")
DP_SGD_FIELDS = ("epsilon", "noise_multiplier")
#: PATE defaults, chosen on the digits data (a few hundred members, 10 classes): 20 teachers
#: keep ~30 records each, so each one still learns, and σ = 4 votes leaves the plurality of
#: 20 mostly intact (label accuracy within a few points of the noiseless vote; see docs/defenses/pate.md).
PATE_DEFAULTS = {"teachers": 20, "sigma": 4.0, "data_dependent": False}


class PrivacyConfig(Section):
    """Formal privacy. ``dp-sgd``: Opacus, Poisson sampling, per-sample clipping.

    ``pate``: ``teachers`` models on disjoint partitions of the members vote on the transfer
    inputs; GNMax adds N(0, σ²) to the vote counts (Papernot et al. 2018), Confident-GNMax
    (``threshold`` and ``sigma_threshold``) answers only queries whose noisy top count clears
    the threshold. The student learns the noisy labels of the answered queries.
    """

    mechanism: Literal["none", "dp-sgd", "pate"] = Field(
        "none", description='"dp-sgd": train the teacher with DP-SGD (Opacus); "pate": release noisy teacher votes.')
    epsilon: float | None = Field(None, gt=0, description="dp-sgd: target ε (the noise multiplier is solved for it).")
    noise_multiplier: float | None = Field(None, ge=0, description="dp-sgd: given σ (ε is then computed); set this or epsilon.")
    delta: float | None = Field(None, gt=0, lt=1, description="Default min(1/(10·members), 1e-5).")
    max_grad_norm: float = Field(1.0, gt=0, description="dp-sgd: per-sample gradient clipping norm.")
    accountant: Literal["prv", "rdp"] = Field("prv", description="dp-sgd: privacy accountant (Opacus PRV or RDP).")
    poisson_sampling: bool = Field(True, description="dp-sgd: Poisson-sampled minibatches, as the accounting assumes.")
    teachers: int | None = Field(None, ge=1, description="pate: teachers on disjoint partitions of the members (default 20).")
    sigma: float | None = Field(None, gt=0, description="pate: GNMax noise σ on the vote counts (default 4).")
    threshold: float | None = Field(None, ge=0, description="pate: Confident-GNMax threshold on the noisy top vote count.")
    sigma_threshold: float | None = Field(None, gt=0, description="pate: noise σ1 of the Confident-GNMax threshold test.")
    data_dependent: bool | None = Field(
        None, description="pate: also report the data-dependent ε (Papernot et al. 2018); not itself private.")

    @model_validator(mode="before")
    @classmethod
    def _pate_defaults(cls, raw: Any) -> Any:
        """PATE fields get their defaults only under mechanism = "pate" (elsewhere they stay unset)."""
        if isinstance(raw, dict) and raw.get("mechanism") == "pate":
            return {**PATE_DEFAULTS, **raw}
        return raw

    @model_validator(mode="after")
    def _one_budget(self) -> PrivacyConfig:
        problems = self._misplaced_settings()
        if self.mechanism == "dp-sgd" and (self.epsilon is None) == (self.noise_multiplier is None):
            problems.insert(0, 'mechanism = "dp-sgd" needs exactly one of epsilon or noise_multiplier')
        if self.mechanism == "pate":
            problems += self._confident_gnmax_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _misplaced_settings(self) -> list[str]:
        """Settings of the mechanism that is not chosen."""
        problems = []
        if self.mechanism != "pate":
            problems += [f'{name} is a PATE setting; it needs mechanism = "pate" (got {self.mechanism!r})'
                         for name in PATE_FIELDS if getattr(self, name) is not None]
        if self.mechanism != "dp-sgd":
            problems += [f'{name} is a DP-SGD setting; it needs mechanism = "dp-sgd" (got {self.mechanism!r})'
                         for name in DP_SGD_FIELDS if getattr(self, name) is not None]
        return problems

    def _confident_gnmax_problems(self) -> list[str]:
        problems = []
        if (self.threshold is None) != (self.sigma_threshold is None):
            problems.append("Confident-GNMax needs both threshold and sigma_threshold "
                            f"(got threshold={self.threshold}, sigma_threshold={self.sigma_threshold})")
        if self.threshold is not None and self.threshold > self.teachers:
            problems.append(f"threshold = {self.threshold} exceeds teachers = {self.teachers}: "
                            "no noisy top count would clear it more than by chance")
        return problems

    def resolved_delta(self, n_members: int) -> float:
        """δ as given, or min(1 / (10·members), 1e-5): the rule DP-SGD uses."""
        return self.delta if self.delta is not None else default_delta(n_members)
