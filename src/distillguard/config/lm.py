"""The causal-LM track's own settings: architecture, tokenizer, probes, and its defaults.

Text data selects this track; :data:`LM_DEFAULTS` then replaces the classifier defaults
that make no sense for a language model (the resolved spec shows the values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from distillguard.attack_names import LM_ATTACKS
from distillguard.config.base import Section
from distillguard.config.softlabels import with_defended_lm_release


class LMArchConfig(Section):
    """A tiny causal LM built from scratch (:func:`distillguard.lm.models.build_causal_lm`)."""

    family: Literal["gpt2", "llama"] = Field("gpt2", description="Hugging Face architecture family.")
    layers: int = Field(2, ge=1, description="Transformer blocks.")
    width: int = Field(128, ge=8, description="Embedding width (n_embd / hidden_size).")
    heads: int = Field(4, ge=1, description="Attention heads; must divide width.")
    context: int = Field(128, ge=8, description="Context length in tokens (n_positions); blocks are this long.")
    mlp_width: int | None = Field(None, ge=1, description="Default 4 x width.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout probability in the blocks.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> LMArchConfig:
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be a multiple of heads ({self.heads})")
        return self

    def model_config_dict(self) -> dict[str, Any]:
        """The flat dict :func:`~distillguard.lm.models.build_causal_lm` takes."""
        return {"kind": self.family, "n_layer": self.layers, "n_embd": self.width, "n_head": self.heads,
                "n_positions": self.context, "n_inner": self.mlp_width, "dropout": self.dropout,
                "tie_embeddings": True}


class TokenizerConfig(Section):
    """The tokenizer of a language-model run: a local folder, or byte-level BPE fitted on the transfer text."""

    path: Path | None = Field(None, description="A local Hugging Face tokenizer folder.")
    vocab_size: int = Field(2048, ge=258, description="BPE vocabulary when fitted (on transfer text only).")
    min_frequency: int = Field(2, ge=1, description="BPE: merge only pairs seen at least this often.")


class LMProbeConfig(Section):
    """Probe settings of a language-model audit (sample counts bound its run time)."""

    exposure_references: int = Field(2000, ge=10, description="Random fillings per canary (Carlini et al. 2019).")
    reference_epochs: int = Field(
        1, ge=0, description="Epochs of the reference model, trained on the transfer text only (0: untrained). "
                             "It is each canary's exposure baseline and the 'reference' attack's denominator.")
    mia_texts: int = Field(500, ge=10, description="Members and as many nonmembers scored by the LM attacks (500: the "
                           "gate's TPR-at-1%-FPR check needs 5 false positives to conclude).")
    min_k: float = Field(0.2, gt=0, le=1, description="Fraction of tokens for min_k / min_k_pp.")
    pii_records: int = Field(100, ge=1, description="PII records probed (first N of the PII file).")
    pii_samples: int = Field(4, ge=0, description="Sampled completions per PII prompt (0: greedy only).")
    pii_tokens: int = Field(24, ge=1, description="Tokens generated per PII completion (fewer when the context is short).")
    pii_templates: dict[str, list[str]] = Field(
        default_factory=lambda: {"email": ["The email address of {name} is", "Customer record -- name: {name}; email:",
                                           "From: {name} <"],
                                 "phone": ["Customer record -- name: {name}; email: {email}; phone:"],
                                 "account": ["Customer record -- name: {name}; email: {email}; phone: {phone}; account:"]},
        description="Target field -> prompts naming other fields; builtin = \"news-pii\" defaults to its own phrasings "
                    "(\"Press enquiries: {name},\", ...).")
    extraction_samples: int = Field(128, ge=0, description="Sampled generations for the extraction probe (0: off).")
    extraction_tokens: int = Field(64, ge=8, description="Tokens per generation of the extraction probe.")
    extractable_texts: int = Field(100, ge=0, description="Member documents tested for k-extractability (0: off).")
    extractable_k: int = Field(32, ge=1, description="Prefix tokens of k-extractability (Carlini et al. 2022).")
    extractable_suffix: int = Field(32, ge=1, description="Suffix tokens that must match for k-extractability.")
    divergence_samples: int = Field(32, ge=0, description="Generations after a repeated-token prompt (0: off).")
    min_private_length: int = Field(24, ge=4, description="Tokens of verbatim private text that count as extracted.")


# The PII probe's prompts in the phrasings of the built-in news-pii (its default there; the
# corpus writes its contact paragraphs with exactly these openings, see distillguard.lm.news_corpus).
NEWS_PII_TEMPLATES: dict[str, list[str]] = {
    "email": ["Press enquiries: {name},", "{name} (", "contact {name} on {phone} or email"],
    "phone": ["Press enquiries: {name}, {email},", "should contact {name} on", "said {name}, who can be reached on"],
}

# Defaults of the causal-LM track where the classifier defaults make no sense (sized for the
# built-in pii-corpus of ~300 kB on 2 CPU cores; see docs/tracks/language-models.md).
LM_DEFAULTS: dict[str, dict[str, Any]] = {
    "teacher": {"kind": "causal-lm", "epochs": 8, "batch_size": 16, "lr": 3e-3, "val_fraction": 0.0},
    "student": {"kind": "causal-lm", "epochs": 8, "batch_size": 16, "lr": 3e-3, "val_fraction": 0.0},
    "audit": {"shadows": 0, "canaries": 0, "attacks": list(LM_ATTACKS)},
    "gate": {"max_accuracy_gap": None, "max_canary_excess_bits": 4.0, "max_perplexity_ratio": 1.15},
}


def with_lm_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw spec with the causal-LM defaults of :data:`LM_DEFAULTS` where the user gave none, the
    defended release (:func:`~distillguard.config.softlabels.with_defended_lm_release`) and, for
    ``builtin = "news-pii"``, the PII probe's prompts in that corpus's phrasings."""
    out = dict(raw)
    for section, defaults in LM_DEFAULTS.items():
        given = out.get(section, {})
        if isinstance(given, dict):
            out[section] = {**defaults, **given}
    data, audit = out.get("data"), out["audit"]
    if (isinstance(data, dict) and data.get("builtin") == "news-pii" and isinstance(audit, dict)
            and isinstance(audit.get("lm", {}), dict)):
        out["audit"] = {**audit, "lm": {"pii_templates": NEWS_PII_TEMPLATES, **audit.get("lm", {})}}
    transfer = out.get("transfer")
    if isinstance(transfer, dict) and isinstance(transfer.get("synthetic"), dict):  # a text generator, not MST
        out["transfer"] = {**transfer, "synthetic": {"mechanism": "dp-lm", **transfer["synthetic"]}}
    return with_student_start(with_defended_lm_release(out), given=raw.get("student"))


# A student started from the public model is fine-tuned, not trained: every epoch on the
# release's labels (the public model's own distribution, 4-bit and top-k, plus sampled and
# digit tokens on text it already fitted) costs test perplexity. On news-pii, from the
# public model's 178.9: 180.9 after one epoch at 3e-4, 184.8 after four; 192.3 after one
# at 3e-3, 204.6 after eight (docs/results/lm-news.md).
PUBLIC_START_RECIPE = {"epochs": 1, "lr": 3e-4}


def with_student_start(raw: dict[str, Any], *, given: Any) -> dict[str, Any]:
    """``[student] start = "auto"`` resolved to ``"public"`` or ``"scratch"``, and a fine-tune recipe for a public start.

    The public model saw only the guarded transfer text, so starting from it costs no ε,
    and the student keeps what that model knows where the release's labels carry almost
    nothing else (a mixing weight of order 1e-4 at the default ε): on news-pii a student
    trained from scratch on those labels reached 1.26× the teacher's perplexity, the
    public model itself 1.00× (docs/results/lm-news.md).

    Auto starts from the private release's public model when there is one, the student has
    no ``path``, the teacher is built (no ``path``) and both have one architecture; the
    resolved spec shows the choice. A public start gets :data:`PUBLIC_START_RECIPE` unless
    the user set the student's ``epochs`` or ``lr``.
    """
    student, teacher, softlabels = raw.get("student"), raw.get("teacher", {}), raw.get("softlabels", {})
    if not (isinstance(student, dict) and isinstance(teacher, dict) and isinstance(softlabels, dict)):
        return raw
    start = student.get("start", "auto")
    if start == "auto":
        try:
            same_arch = LMArchConfig(**student.get("arch", {})) == LMArchConfig(**teacher.get("arch", {}))
        except (TypeError, ValueError):  # an invalid arch: validation names it
            return raw
        public = (softlabels.get("private_prediction") is not None and student.get("path") is None
                  and teacher.get("path") is None and same_arch)
        start = "public" if public else "scratch"
    chosen = given if isinstance(given, dict) else {}
    recipe = PUBLIC_START_RECIPE if start == "public" and not {"epochs", "lr"} & set(chosen) else {}
    return {**raw, "student": {**student, "start": start, **recipe}}


def student_start_problems(student: Any, teacher: Any, *, private: Any, lm: bool = True) -> list[str]:
    """What is wrong with ``[student] start`` given the release (``private``: its private_prediction or None)."""
    if not lm:
        return [] if student.start == "auto" else [
            f"[student].start: {student.start!r} chooses a causal LM student's first weights; leave it out for "
            "classifiers"]
    if student.start != "public":
        return []
    if private is None:
        return ['[student].start: "public" starts from the public model of [softlabels] private_prediction, '
                'which this spec does not use; set start = "scratch" or "auto"']
    if student.path is not None:
        return ['[student].start: "public" and [student].path both choose the first weights; keep one']
    if teacher.path is None and student.arch != teacher.arch:
        return ['[student].start: "public" needs [student].arch equal to [teacher].arch (the public model is '
                'built like the teacher); make them equal or set start = "scratch"']
    return []


def starts_from_public(spec: Any) -> bool:
    """Whether the distill stage starts the student from the release's public model (``start = "auto"`` is
    resolved, and the choice explained, by :func:`with_student_start`)."""
    s = spec.student
    return s.start == "public" and s.path is None and spec.softlabels.private_prediction is not None
