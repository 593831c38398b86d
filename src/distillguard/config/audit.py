"""``[audit]``: which membership attacks run, on how many shadow pipelines, and where.

The attack names come from :mod:`distillguard.attack_names`, the one catalogue the
attack registry and the LM probes also read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from distillguard.attack_names import (LABEL_ONLY_ATTACKS, SELECTED_ATTACK, SHADOW_ATTACKS, THRESHOLD_ATTACKS,
                                       AttackName)
from distillguard.config.base import Section
from distillguard.config.lm import LMProbeConfig

# [audit] keys that say where shadows train, not what they compute (left out of fingerprints).
EXECUTION_KEYS = ("backend", "ray_address", "ray_shadows_per_task", "ray_cpus_per_task")


#: The shadow attacks that out-models alone calibrate (reference models trained without any audited record).
OFFLINE_REFERENCE_ATTACKS = ("lira_offline", "rmia")


class AuditConfig(Section):
    attacks: list[AttackName] = Field(
        default_factory=lambda: [*THRESHOLD_ATTACKS, *SHADOW_ATTACKS, SELECTED_ATTACK, *LABEL_ONLY_ATTACKS],
        description="Membership attacks to run; the shadow attacks (lira_online, lira_offline, rmia) need shadows; "
                    '"strongest" (the LiRA/RMIA configuration chosen leave-one-out on the shadows) needs shadows >= 4; '
                    "the label-only attacks (label_gap, label_noise) see only the predicted class. "
                    "Default: all of them that the shadow count allows (shadows = 0: the threshold attacks; "
                    "label_only_queries = 0: no label-only attacks).")
    shadows: int = Field(
        16, ge=0, description="Shadow pipelines (teacher + labels + student) for LiRA/RMIA; even; 0 = threshold attacks only.",
    )
    canaries: int = Field(32, ge=0, description="Worst-case records planted in the shadow replicas only (0 = none).")
    canary_duplicates: int = Field(4, ge=1, description="Copies of every other canary in a training set.")
    canary_kind: Literal["ood", "mislabeled", "both"] = Field(
        "both", description='Classifier canaries: "ood" (features drawn from their marginals, random label), '
                            '"mislabeled" (real test records with a wrong label: Aerni, Zhang & Tramèr 2024\'s most '
                            'vulnerable records) or "both" (half of each).')
    lira_variance: Literal["auto", "global", "per_example", "fixed", "fixed_out"] = Field(
        "auto", description="LiRA's Gaussian variance for lira_online/lira_offline: one pooled within-record σ "
                            '("global"), one per record, the reference code\'s fixed σ with median centres ("fixed": '
                            'online from the in-values, offline from the out-values; "fixed_out": from the out-values), '
                            "or auto (global below 64 shadows).")
    shadow_recipe: Literal["auto", "replay", "plain"] = Field(
        "replay", description='How shadow teachers and students are trained: "replay" keeps each one\'s best validation '
                              'epoch, as the real pipeline does; "plain" its last epoch; "auto" trains both (the '
                              "teachers once, the students twice) and, per target, keeps the recipe whose shadows "
                              'calibrate the "strongest" attack better, judged leave-one-out on the shadows '
                              "(docs/strongest-attack.md; on the demo it gained nothing: replay is the default).")
    rmia_offline: bool = Field(
        True, description="RMIA's offline variant: only shadows trained without a record estimate Pr(x).")
    label_only_queries: int = Field(
        16, ge=0, le=1024,
        description="label_noise: noisy copies of each audited record whose predicted class it reads (Gaussian noise, "
                    "σ × each feature's spread, σ chosen on the shadows); its query budget is this + 1 per record, "
                    "label_gap's is 1. 0 = leave the label-only attacks out of the default attacks.")
    bootstrap: int = Field(200, ge=0, description="Bootstrap resamples for confidence intervals (0: none).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the bootstrap confidence intervals.")
    batched: bool = Field(True, description="Train shadow models many-at-once with torch.func (falls back to a loop).")
    backend: Literal["local", "ray"] = Field(
        "local", description='Where shadow pipelines train: "local" (this process) or "ray" (one Ray task per chunk '
        'of shadows; pip install "distillguard[ray]"). Same seeds, same scores either way.',
    )
    ray_address: str | None = Field(
        None, description='backend = "ray": the cluster to join, passed to ray.init(address=...) (e.g. "auto", '
        '"ray://head:10001"); unset: ray.init() starts a local instance (or joins the one RAY_ADDRESS names).',
    )
    ray_shadows_per_task: int = Field(
        4, ge=1, description='backend = "ray": shadows one task trains batched; fewer = more tasks in parallel, '
        "more = less per-task overhead.",
    )
    ray_cpus_per_task: int = Field(
        1, ge=1, description='backend = "ray": CPUs Ray reserves per task, and torch\'s thread count inside it.',
    )
    reference_models: int = Field(
        0, ge=0, description="distillguard scan without a recipe: models of the [teacher] recipe trained on half the "
                             "test split (non-members, never audited) that calibrate offline LiRA and RMIA, the other "
                             "half being RMIA's population (scan default 8; 0 = none). Not with shadows.")
    lm: LMProbeConfig = Field(LMProbeConfig(), description="causal-lm: the probes' sample counts and prompts.")

    @model_validator(mode="after")
    def _settings_fit_together(self) -> AuditConfig:
        """Shadow counts, canaries and the Ray settings; every problem is reported at once."""
        problems = []
        if self.ray_address is not None and self.backend != "ray":
            problems.append(f'ray_address = {self.ray_address!r} applies to backend = "ray" (got {self.backend!r}); '
                            "set backend or drop ray_address")
        offline_ok = OFFLINE_REFERENCE_ATTACKS if self.reference_models >= 2 else ()
        needs = [a for a in self.attacks if a in SHADOW_ATTACKS and a not in offline_ok]
        if needs and self.shadows < 2:
            problems.append(f"attacks {needs} need shadows >= 2 (got {self.shadows}); set shadows or drop them")
        if self.reference_models and self.shadows:
            problems.append(f"reference_models = {self.reference_models} calibrates a scan without a recipe; with "
                            f"shadows = {self.shadows} the shadows do (set one of them to 0)")
        if self.reference_models == 1:
            problems.append("reference_models = 1: offline LiRA needs a spread, give at least 2 (or 0)")
        if SELECTED_ATTACK in self.attacks and self.shadows < 4:
            problems.append(f'attack "{SELECTED_ATTACK}" is chosen on held-out shadows and needs shadows >= 4 '
                            f"(got {self.shadows}); set shadows or drop it")
        if "label_noise" in self.attacks and self.label_only_queries < 1:
            problems.append("attack label_noise needs label_only_queries >= 1 (got 0); set it or drop label_noise")
        if self.shadows % 2:
            problems.append(f"shadows must be even (complementary pairs), got {self.shadows}")
        if self.canaries and self.shadows < 4:
            problems.append(f"canaries are scored on held-out shadows and need shadows >= 4 (got {self.shadows}); "
                            "set canaries = 0 to plant none")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def fingerprint_params(self) -> dict[str, Any]:
        """The settings that shape the audit's results, without where the shadows run.

        The backend and its Ray settings change where shadows train, not what they compute
        (same seeds, same logits), so switching them reuses a finished audit.
        """
        return self.model_dump(mode="json", exclude=set(EXECUTION_KEYS))
