"""``[teacher]`` and ``[student]``: architecture and training recipe of the two models.

``kind`` picks the architecture and, with the data, the track: ``mlp`` / ``cnn`` are
classifiers, ``causal-lm`` a language model (see :mod:`distillguard.config.spec`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from distillguard.config.base import Section
from distillguard.config.lm import LMArchConfig, TokenizerConfig

ModelKind = Literal["mlp", "cnn", "causal-lm", "hf-text"]

# Defaults of text classification (labelled texts select kind = "hf-text"), sized so that the
# built-in bbc-news runs end to end on 2 busy CPU cores (docs/tracks/text-classifiers.md).
TEXT_CLF_DEFAULTS: dict[str, dict[str, Any]] = {
    "teacher": {"kind": "hf-text", "epochs": 10, "batch_size": 32, "lr": 3e-3,
                "arch": {"layers": 1, "width": 32, "heads": 2}},
    "student": {"kind": "hf-text", "epochs": 10, "batch_size": 32, "lr": 3e-3,
                "arch": {"layers": 1, "width": 32, "heads": 2}},
    "audit": {"shadows": 4},
}


def with_text_clf_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw spec with :data:`TEXT_CLF_DEFAULTS` where the user gave none (``arch`` as a whole)."""
    out = dict(raw)
    for section, defaults in TEXT_CLF_DEFAULTS.items():
        given = out.get(section, {})
        if isinstance(given, dict):
            out[section] = {**defaults, **given}
    return out


class ModelConfig(Section):
    """Architecture and training recipe shared by teacher and student."""

    kind: ModelKind = Field("mlp", description='Architecture: "mlp", "cnn" (image inputs), "causal-lm" (text) or "hf-text" '
                                                '(a Hugging Face sequence classifier of labelled texts).')
    arch: LMArchConfig = Field(LMArchConfig(), description="causal-lm and hf-text: the architecture when no path is given "
                                                            "(hf-text: its context is [data.text].max_length).")
    hidden: list[int] = Field(default_factory=lambda: [256, 256], description="MLP hidden widths; CNN head widths.")
    channels: list[int] = Field(default_factory=lambda: [16, 32], description="CNN conv channels (image inputs).")
    epochs: int = Field(60, ge=1, description="Training epochs (with a validation split, the best checkpoint is kept).")
    batch_size: int = Field(64, ge=1, description="Records (or text blocks) per minibatch.")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay (AdamW).")

    @field_validator("hidden", "channels")
    @classmethod
    def _positive(cls, widths: list[int]) -> list[int]:
        if any(w < 1 for w in widths):
            raise ValueError(f"widths must be positive integers, got {widths}")
        return widths


class SplitAIConfig(Section):
    """``[teacher.split_ai]``: SELENA's Split-AI (Tang et al. 2022), see docs/defenses/split-ai.md."""

    k: int = Field(10, ge=2, description="Sub-teachers; each trains on the members minus those left out of it.")
    l: int = Field(3, ge=1, description="Sub-teachers each member is left out of; a member is answered by exactly "
                                         "these, any other input by l sub-teachers picked by a hash of the input.")
    self_distill: bool = Field(
        False, description="SELENA's self-distillation: the student learns from the members' own inputs, each "
                           "labelled by the l sub-teachers that never saw it, and from no public transfer row; it "
                           "sees sensitive inputs (never their labels), as the manifest and report state.")

    @model_validator(mode="after")
    def _l_below_k(self) -> SplitAIConfig:
        if self.l >= self.k:
            raise ValueError(f"l must be smaller than k (got k = {self.k}, l = {self.l}): every sub-teacher must "
                             "train on some members")
        return self


class HampConfig(Section):
    """``[teacher.hamp]``: HAMP's high-entropy training (Chen & Pattabiraman 2024), see docs/defenses/hamp.md."""

    gamma: float = Field(0.95, gt=0.0, lt=1.0,
                         description="Entropy threshold of the soft targets, as a fraction of log(classes): the true "
                                     "class keeps the probability that makes the target's entropy exactly this.")
    alpha: float = Field(0.1, ge=0.0, description="Weight of the entropy regulariser: loss = KL(target || p) - "
                                                   "alpha * H(p), KL averaged over the batch.")


class TeacherConfig(ModelConfig):
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Cross-entropy label smoothing for the teacher: a regulariser that caps how confident it gets.")
    ensemble: int = Field(
        1, ge=1, description="Teachers on disjoint partitions of the members whose averaged probabilities are the "
                             "soft labels (subsample-and-aggregate: one record moves them by at most 1/n).")
    split_ai: SplitAIConfig | None = Field(
        None, description="Split-AI teacher (SELENA): k sub-teachers, each member left out of l of them and answered "
                          "only by those; other inputs by l sub-teachers chosen by a hash of the input. Unset (default): off.")
    hamp: HampConfig | None = Field(
        None, description="High-entropy teacher training (HAMP, training part): soft targets at an entropy "
                          "threshold plus an entropy regulariser. Applies to every teacher the recipe trains. Unset (default): off.")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=0.5,
        description="Members held out for checkpoint selection; never trained on, so left out of the audit's members.",
    )
    path: Path | None = Field(None, description="Load this teacher (a distillguard teacher folder, or a local Hugging "
                                                "Face causal-LM folder) instead of training; a causal LM is fine-tuned.")
    tokenizer: TokenizerConfig = Field(TokenizerConfig(), description="causal-lm: the tokenizer of both models.")


class StudentConfig(ModelConfig):
    hidden: list[int] = Field(default_factory=lambda: [128], description="MLP hidden widths; CNN head widths.")
    epochs: int = Field(80, ge=1, description="Training epochs (with a validation split, the best checkpoint is kept).")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=0.5, description="Transfer records held out for checkpoint selection (public data only)."
    )
    path: Path | None = Field(None, description="causal-lm: start the student from this local Hugging Face folder "
                                                "(its tokenizer must be the teacher's).")
    start: Literal["auto", "public", "scratch"] = Field(
        "auto", description="causal-lm: where the student's weights start. \"public\": from the private-prediction "
                            "release's public model (trained on the guarded transfer text only, so it costs no ε); "
                            "\"scratch\": a fresh initialisation; \"auto\": public under [softlabels] "
                            "private_prediction when the student's arch is the teacher's and neither has a path "
                            "(the resolved spec shows the choice). A public start is fine-tuned: epochs = 1, "
                            "lr = 3e-4 unless the spec sets either.")
