"""The spec: a TOML file, parsed into frozen pydantic models.

Unknown keys are errors, every problem is reported at once with its field path, and
relative paths are resolved against the spec file's folder, so a spec means the same
thing whatever the working directory. The resolved spec (absolute paths, every default
filled in) is what a run records in ``spec.toml``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distillguard.errors import ConfigError

ROLES = ("members", "nonmembers", "transfer", "test")
BUILTINS = ("digits", "purchase-synth", "pii-corpus")
TEXT_BUILTINS = ("pii-corpus",)
LM_FILES = ("canaries", "pii")  # optional files of a language-model data set


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunConfig(_Strict):
    name: str = Field("distillguard", min_length=1, description="Run name; the default run folder is runs/NAME.")
    seed: int = Field(0, ge=0, description="Seeds every random choice of the run.")
    checkpoint_seconds: float = Field(
        30.0, ge=0.0,
        description="Save resumable training state at most this often (0: every epoch). A killed run loses at "
                    "most this much training; the results do not depend on it.")
    shard_rows: int = Field(
        65_536, ge=1,
        description="Transfer records per soft-label shard: the label and distill stages hold one or two shards at "
                    "a time, and under torchrun the label shards are split among the ranks. The student shuffles "
                    "within a shard and visits the shards in random order, so once the transfer set spans several "
                    "shards its results depend on this; within one shard they do not.")
    batch_split: int | None = Field(
        None, ge=1,
        description="Compute each minibatch's gradient of the teacher and student in this many contiguous parts, "
                    "summed in order; unset: 1, or the number of processes under torchrun (one part per rank). "
                    "A single-process run with batch_split = 2 equals a 2-process torchrun run bit for bit.")


class SplitSizes(_Strict):
    """How many records each role gets from a built-in data set."""

    members: int = Field(600, ge=10)
    nonmembers: int = Field(600, ge=10)
    transfer: int = Field(3000, ge=10)
    test: int = Field(1000, ge=10)


class SynthConfig(_Strict):
    """Shape of ``purchase-synth`` (binary purchase histories, classes from prototypes)."""

    features: int = Field(600, ge=2)
    classes: int = Field(100, ge=2)
    clusters: int = Field(20, ge=1, description="Prototype families; classes in one family share items.")
    flip: float = Field(0.2, ge=0.0, le=0.5, description="Per-feature noise around a class prototype.")


class PiiCorpusConfig(_Strict):
    """Sizes and knobs of the built-in ``pii-corpus`` (seeded Faker; see :mod:`distillguard.lm.pii_corpus`)."""

    member_bytes: int = Field(300_000, ge=1000, description="Approximate UTF-8 size of the members text.")
    nonmember_bytes: int | None = Field(None, ge=1000, description="Default: member_bytes.")
    test_bytes: int | None = Field(None, ge=1000, description="Default: member_bytes // 4.")
    transfer_bytes: int | None = Field(None, ge=1000, description="Default: member_bytes.")
    repetitions: list[int] = Field(default_factory=lambda: [1, 4, 16], min_length=1,
                                   description="Canary repetition counts planted in the members.")
    canaries_per_count: int = Field(2, ge=0, description="Canaries planted at each repetition count.")
    pii_mentions: list[int] = Field(
        default_factory=lambda: [4, 8, 16],
        description="Document counts of the frequently mentioned people (the others get 1-3 documents); [] for none.")
    pii_people_per_count: int = Field(
        10, ge=0, description="Frequent people at each pii_mentions count in the members (other roles: in proportion).")
    transfer_in_domain: float = Field(
        0.75, ge=0, le=1, description="Share of the transfer bytes that is in-domain public text (emails, chats, "
                                      "records of other people); the rest is general public-style text.")

    @field_validator("repetitions", "pii_mentions")
    @classmethod
    def _positive_counts(cls, counts: list[int]) -> list[int]:
        if any(c < 1 for c in counts):
            raise ValueError(f"counts must be >= 1, got {counts}")
        return counts


class DataConfig(_Strict):
    builtin: Literal["digits", "purchase-synth", "pii-corpus"] | None = None
    format: Literal["csv", "parquet", "npz", "jsonl"] | None = None
    label: str = Field("y", min_length=1, description="Label column (csv/parquet); npz files use arrays X and y.")
    members: Path | None = None
    nonmembers: Path | None = None
    transfer: Path | None = None
    test: Path | None = None
    input_shape: list[int] | None = Field(
        None, min_length=1, description="Files only: reshape each record's features to this shape (e.g. [1, 8, 8] for "
                                        "kind = \"cnn\"); the product must equal the number of feature columns.")
    canaries: Path | None = Field(None, description="JSONL: secrets planted in the members text (language models).")
    pii: Path | None = Field(None, description="JSONL: PII records the members mention (language models).")
    sizes: SplitSizes | None = None
    synth: SynthConfig = SynthConfig()
    pii_corpus: PiiCorpusConfig = PiiCorpusConfig()
    leak_policy: Literal["fail", "drop", "warn"] = Field(
        "fail", description="Transfer rows that copy a private record: fail (exit 2), drop them, or warn.")
    leak_threshold: float = Field(
        0.02, ge=0, description="Near-duplicate cut-off: NN distance relative to the private data's own NN scale.")
    text_leak_jaccard: float = Field(
        0.7, gt=0, le=1, description="Text: flag transfer documents whose character-5-gram Jaccard similarity with a "
                                     "member or nonmember document is at least this (MinHash LSH, exact check).")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        files = {role: getattr(self, role) for role in ROLES}
        if self.builtin is None:
            missing = [role for role, path in files.items() if path is None]
            if missing:
                raise ValueError(
                    "needs builtin = " + " | ".join(f'"{b}"' for b in BUILTINS)
                    + f" or the four files members, nonmembers, transfer, test (missing: {', '.join(missing)})"
                )
        else:
            given = [role for role, path in {**files, "canaries": self.canaries, "pii": self.pii}.items()
                     if path is not None]
            if given:
                raise ValueError(f"builtin = {self.builtin!r} takes no files (got {', '.join(given)})")
            if self.input_shape is not None:
                raise ValueError(f"builtin = {self.builtin!r} has its own input shape; input_shape is for files")
        if self.input_shape is not None and any(d < 1 for d in self.input_shape):
            raise ValueError(f"input_shape must hold positive integers, got {self.input_shape}")
        if not self.is_text() and (self.canaries is not None or self.pii is not None):
            raise ValueError('canaries and pii files belong to text data (format = "jsonl"); '
                             f"got format {self.format or self.builtin!r}")
        return self

    def is_text(self) -> bool:
        """True for language-model data: JSONL files or the built-in ``pii-corpus``."""
        if self.builtin is not None:
            return self.builtin in TEXT_BUILTINS
        if self.format is not None:
            return self.format == "jsonl"
        return bool(self.members) and Path(self.members).suffix.lower() == ".jsonl"

    def fingerprint_params(self) -> dict[str, Any]:
        """The settings that shape the data, without file paths (their contents are hashed instead)."""
        return self.model_dump(mode="json", exclude={*ROLES, *LM_FILES})

    def resolved_format(self) -> str:
        """The file format: explicit, or guessed from the members file's suffix."""
        if self.format is not None:
            return self.format
        suffix = Path(self.members).suffix.lower().lstrip(".") if self.members else ""
        if suffix in ("csv", "parquet", "npz", "jsonl"):
            return suffix
        raise ConfigError(f"[data].format: cannot tell the format of {self.members}; "
                          "set format = \"csv\" | \"parquet\" | \"npz\" | \"jsonl\"")

    def split_sizes(self) -> SplitSizes:
        if self.sizes is not None:
            return self.sizes
        if self.builtin == "digits":  # 1,797 images in all
            return SplitSizes(members=500, nonmembers=500, transfer=500, test=297)
        return SplitSizes()


class LMArchConfig(_Strict):
    """A tiny causal LM built from scratch (:func:`distillguard.lm.models.build_causal_lm`)."""

    family: Literal["gpt2", "llama"] = "gpt2"
    layers: int = Field(2, ge=1)
    width: int = Field(128, ge=8, description="Embedding width (n_embd / hidden_size).")
    heads: int = Field(4, ge=1)
    context: int = Field(128, ge=8, description="Context length in tokens (n_positions); blocks are this long.")
    mlp_width: int | None = Field(None, ge=1, description="Default 4 x width.")
    dropout: float = Field(0.0, ge=0, lt=1)

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


class TokenizerConfig(_Strict):
    """The tokenizer of a language-model run: a local folder, or byte-level BPE fitted on the transfer text."""

    path: Path | None = Field(None, description="A local Hugging Face tokenizer folder.")
    vocab_size: int = Field(2048, ge=258, description="BPE vocabulary when fitted (on transfer text only).")
    min_frequency: int = Field(2, ge=1)


class ModelConfig(_Strict):
    """Architecture and training recipe shared by teacher and student."""

    kind: Literal["mlp", "cnn", "causal-lm"] = "mlp"
    arch: LMArchConfig = Field(LMArchConfig(), description="causal-lm: the architecture when no path is given.")
    hidden: list[int] = Field(default_factory=lambda: [256, 256], description="MLP hidden widths; CNN head widths.")
    channels: list[int] = Field(default_factory=lambda: [16, 32], description="CNN conv channels (image inputs).")
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)

    @field_validator("hidden", "channels")
    @classmethod
    def _positive(cls, widths: list[int]) -> list[int]:
        if any(w < 1 for w in widths):
            raise ValueError(f"widths must be positive integers, got {widths}")
        return widths


class TeacherConfig(ModelConfig):
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Cross-entropy label smoothing for the teacher: a regulariser that caps how confident it gets.")
    ensemble: int = Field(
        1, ge=1, description="Teachers on disjoint partitions of the members whose averaged probabilities are the "
                             "soft labels (subsample-and-aggregate: one record moves them by at most 1/n).")
    val_fraction: float = Field(
        0.1, ge=0.0, lt=0.5,
        description="Members held out for checkpoint selection; never trained on, so left out of the audit's members.",
    )
    path: Path | None = Field(None, description="Load this teacher (a distillguard teacher folder, or a local Hugging "
                                                "Face causal-LM folder) instead of training; a causal LM is fine-tuned.")
    tokenizer: TokenizerConfig = TokenizerConfig()


class StudentConfig(ModelConfig):
    hidden: list[int] = Field(default_factory=lambda: [128], description="MLP hidden widths; CNN head widths.")
    epochs: int = Field(80, ge=1)
    val_fraction: float = Field(
        0.1, ge=0.0, lt=0.5, description="Transfer records held out for checkpoint selection (public data only)."
    )
    path: Path | None = Field(None, description="causal-lm: start the student from this local Hugging Face folder "
                                                "(its tokenizer must be the teacher's).")


class DistillConfig(_Strict):
    temperature: float = Field(1.0, gt=0, description="Softmax temperature applied to stored logits (Hinton et al. 2015).")
    alpha: float = Field(0.0, ge=0, le=1, description="Weight of cross-entropy on the teacher's argmax labels.")
    loss: Literal["kl", "forward_kl", "reverse_kl", "jsd"] = Field(
        "kl", description='Classifiers: "kl". Causal LMs: "forward_kl" (= "kl", x T^2), "reverse_kl" or "jsd" '
                          "(generalized JSD with beta, as in TRL's GKD).")
    beta: float = Field(0.5, gt=0, lt=1, description="JSD(beta) interpolation weight (loss = \"jsd\").")
    top_k: int = Field(32, ge=1, description="causal-lm: teacher log-probabilities stored per token (plus the leftover).")
    hard_tokens: Literal["digits", "none"] = Field(
        "digits", description='causal-lm: "digits": wherever the transfer text\'s next token holds a digit, the '
                              "student learns that token (cross-entropy) instead of the teacher's labels, which is "
                              "where memorized numbers (secrets, phone and account numbers) live; \"none\": distill "
                              "every position.")

    def lm_loss(self) -> str:
        """The LM loss id (``"kl"`` means forward KL)."""
        return "forward_kl" if self.loss == "kl" else self.loss


class SoftLabelConfig(_Strict):
    """What the teacher releases to the student (applied in the label stage, at T=1).

    The knobs run in a fixed order: noise on the logits, hard labels, top-k, rounding,
    then uniform mixing (see :mod:`distillguard.train.label_defenses`).
    """

    labels: Literal["soft", "hard"] = Field("soft", description="hard: release the teacher's argmax only.")
    top_k: int | None = Field(None, ge=1, description="Release only the k largest probabilities, renormalized.")
    round_to: float | None = Field(None, gt=0, le=1, description="Round released probabilities to multiples of this step.")
    mix_uniform: float = Field(0.0, ge=0, le=1, description="Mix with the uniform distribution: (1-λ)p + λ/C.")
    logit_noise: float = Field(0.0, ge=0, description="σ of Gaussian noise added to the teacher's logits.")

    def is_identity(self) -> bool:
        return self == SoftLabelConfig()

    def knobs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~distillguard.train.label_defenses.defend_soft_labels`."""
        return {"hard": self.labels == "hard", "top_k": self.top_k, "round_to": self.round_to,
                "mix_uniform": self.mix_uniform, "logit_noise": self.logit_noise}


class TransferConfig(_Strict):
    """Which transfer records the teacher labels (after the leak guard)."""

    size: int | None = Field(None, ge=1, description="Label a random subset of this many transfer records.")
    select: Literal["all", "low_entropy", "far_from_private"] = Field(
        "all", description="low_entropy: keep the records the teacher is surest about (DMP); far_from_private: drop "
                           "the records nearest to a private record.")
    keep_fraction: float = Field(1.0, gt=0, le=1, description="Fraction of records the selection rule keeps.")

    @model_validator(mode="after")
    def _fraction_with_rule(self) -> TransferConfig:
        if self.select == "all" and self.keep_fraction != 1.0:
            raise ValueError('keep_fraction needs select = "low_entropy" | "far_from_private"')
        return self

    def is_identity(self) -> bool:
        return self == TransferConfig()


PATE_FIELDS = ("teachers", "sigma", "threshold", "sigma_threshold", "data_dependent")
DP_SGD_FIELDS = ("epsilon", "noise_multiplier")
#: PATE defaults, chosen on the digits data (a few hundred members, 10 classes): 20 teachers
#: keep ~30 records each, so each one still learns, and σ = 4 votes leaves the plurality of
#: 20 mostly intact (label accuracy within a few points of the noiseless vote; see README).
PATE_DEFAULTS = {"teachers": 20, "sigma": 4.0, "data_dependent": False}


class PrivacyConfig(_Strict):
    """Formal privacy. ``dp-sgd``: Opacus, Poisson sampling, per-sample clipping.

    ``pate``: ``teachers`` models on disjoint partitions of the members vote on the transfer
    inputs; GNMax adds N(0, σ²) to the vote counts (Papernot et al. 2018), Confident-GNMax
    (``threshold`` and ``sigma_threshold``) answers only queries whose noisy top count clears
    the threshold. The student learns the noisy labels of the answered queries.
    """

    mechanism: Literal["none", "dp-sgd", "pate"] = "none"
    epsilon: float | None = Field(None, gt=0, description="dp-sgd: target ε (the noise multiplier is solved for it).")
    noise_multiplier: float | None = Field(None, ge=0, description="dp-sgd: given σ (ε is then computed); set this or epsilon.")
    delta: float | None = Field(None, gt=0, lt=1, description="Default min(1/(10·members), 1e-5).")
    max_grad_norm: float = Field(1.0, gt=0, description="dp-sgd: per-sample gradient clipping norm.")
    accountant: Literal["prv", "rdp"] = "prv"
    poisson_sampling: bool = True
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
        problems = []
        if self.mechanism == "dp-sgd" and (self.epsilon is None) == (self.noise_multiplier is None):
            problems.append('mechanism = "dp-sgd" needs exactly one of epsilon or noise_multiplier')
        if self.mechanism != "pate":
            problems += [f'{name} is a PATE setting; it needs mechanism = "pate" (got {self.mechanism!r})'
                         for name in PATE_FIELDS if getattr(self, name) is not None]
        if self.mechanism != "dp-sgd":
            problems += [f'{name} is a DP-SGD setting; it needs mechanism = "dp-sgd" (got {self.mechanism!r})'
                         for name in DP_SGD_FIELDS if getattr(self, name) is not None]
        if self.mechanism == "pate" and (self.threshold is None) != (self.sigma_threshold is None):
            problems.append("Confident-GNMax needs both threshold and sigma_threshold "
                            f"(got threshold={self.threshold}, sigma_threshold={self.sigma_threshold})")
        if self.mechanism == "pate" and self.threshold is not None and self.threshold > self.teachers:
            problems.append(f"threshold = {self.threshold} exceeds teachers = {self.teachers}: "
                            "no noisy top count would clear it more than by chance")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def resolved_delta(self, n_members: int) -> float:
        """δ as given, or min(1 / (10·members), 1e-5): the rule DP-SGD uses."""
        return self.delta if self.delta is not None else min(1.0 / (10 * n_members), 1e-5)


THRESHOLD_ATTACKS = ("loss", "confidence", "entropy", "modified_entropy")
SHADOW_ATTACKS = ("lira_online", "lira_offline", "rmia")
LM_ATTACKS = ("loss", "zlib", "min_k", "min_k_pp", "reference")
AttackName = Literal["loss", "confidence", "entropy", "modified_entropy", "lira_online", "lira_offline", "rmia",
                     "zlib", "min_k", "min_k_pp", "reference"]


class LMProbeConfig(_Strict):
    """Probe settings of a language-model audit (sample counts bound its run time)."""

    exposure_references: int = Field(2000, ge=10, description="Random fillings per canary (Carlini et al. 2019).")
    reference_epochs: int = Field(
        1, ge=0, description="Epochs of the reference model, trained on the transfer text only (0: untrained). "
                             "It is each canary's exposure baseline and the 'reference' attack's denominator.")
    mia_texts: int = Field(400, ge=10, description="Members and as many nonmembers scored by the LM attacks.")
    min_k: float = Field(0.2, gt=0, le=1, description="Fraction of tokens for min_k / min_k_pp.")
    pii_records: int = Field(100, ge=1, description="PII records probed (first N of the PII file).")
    pii_samples: int = Field(4, ge=0, description="Sampled completions per PII prompt (0: greedy only).")
    pii_tokens: int = Field(24, ge=1, description="Tokens generated per PII completion (fewer when the context is short).")
    pii_templates: dict[str, list[str]] = Field(
        default_factory=lambda: {"email": ["The email address of {name} is", "Customer record -- name: {name}; email:",
                                           "From: {name} <"],
                                 "phone": ["Customer record -- name: {name}; email: {email}; phone:"],
                                 "account": ["Customer record -- name: {name}; email: {email}; phone: {phone}; account:"]},
        description="Target field -> prompts naming other fields.")
    extraction_samples: int = Field(128, ge=0, description="Sampled generations for the extraction probe (0: off).")
    extraction_tokens: int = Field(64, ge=8)
    extractable_texts: int = Field(100, ge=0, description="Member documents tested for k-extractability (0: off).")
    extractable_k: int = Field(32, ge=1, description="Prefix tokens of k-extractability (Carlini et al. 2022).")
    extractable_suffix: int = Field(32, ge=1)
    divergence_samples: int = Field(32, ge=0, description="Generations after a repeated-token prompt (0: off).")
    min_private_length: int = Field(24, ge=4, description="Tokens of verbatim private text that count as extracted.")


# [audit] keys that say where shadows train, not what they compute (left out of fingerprints).
EXECUTION_KEYS = ("backend", "ray_address", "ray_shadows_per_task", "ray_cpus_per_task")


class AuditConfig(_Strict):
    attacks: list[AttackName] = Field(default_factory=lambda: [*THRESHOLD_ATTACKS, *SHADOW_ATTACKS])
    shadows: int = Field(
        16, ge=0, description="Shadow pipelines (teacher + labels + student) for LiRA/RMIA; even; 0 = threshold attacks only.",
    )
    canaries: int = Field(32, ge=0, description="Worst-case records planted in the shadow replicas only (0 = none).")
    canary_duplicates: int = Field(4, ge=1, description="Copies of every other canary in a training set.")
    lira_variance: Literal["auto", "global", "per_example"] = "auto"
    rmia_offline: bool = True
    bootstrap: int = Field(200, ge=0, description="Bootstrap resamples for confidence intervals (0: none).")
    confidence: float = Field(0.95, gt=0, lt=1)
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
    lm: LMProbeConfig = LMProbeConfig()

    @model_validator(mode="after")
    def _ray_settings_need_ray(self) -> AuditConfig:
        if self.ray_address is not None and self.backend != "ray":
            raise ValueError(f'ray_address = {self.ray_address!r} applies to backend = "ray" (got {self.backend!r}); '
                             "set backend or drop ray_address")
        return self

    def fingerprint_params(self) -> dict[str, Any]:
        """The settings that shape the audit's results, without where the shadows run.

        The backend and its Ray settings change where shadows train, not what they compute
        (same seeds, same logits), so switching them reuses a finished audit.
        """
        return self.model_dump(mode="json", exclude=set(EXECUTION_KEYS))

    @model_validator(mode="after")
    def _shadows_for_attacks(self) -> AuditConfig:
        needs = [a for a in self.attacks if a in SHADOW_ATTACKS]
        if needs and self.shadows < 2:
            raise ValueError(f"attacks {needs} need shadows >= 2 (got {self.shadows}); set shadows or drop them")
        if self.shadows % 2:
            raise ValueError(f"shadows must be even (complementary pairs), got {self.shadows}")
        if self.canaries and self.shadows < 4:
            raise ValueError(f"canaries are scored on held-out shadows and need shadows >= 4 (got {self.shadows}); "
                             "set canaries = 0 to plant none")
        return self


class GateConfig(_Strict):
    attack: AttackName = "lira_online"
    target: Literal["teacher", "student"] = "student"
    population: Literal["all", "canaries"] = "all"
    max_auc: float | None = Field(0.60, ge=0, le=1, description="Compared with the upper end of the AUC interval.")
    max_tpr_at_fpr: dict[str, float] = Field(default_factory=lambda: {"0.01": 0.05})
    max_accuracy_gap: float | None = Field(0.05, ge=0, le=1)
    max_mean_exposure_bits: float | None = Field(
        None, ge=0, description="causal-lm: mean exposure of the gate's target over the most repeated canaries.")
    max_pii_exact_match: float | None = Field(None, ge=0, le=1, description="causal-lm: PII completion exact-match rate.")
    max_perplexity_ratio: float | None = Field(None, gt=0, description="causal-lm: student / teacher test perplexity.")

    @field_validator("max_tpr_at_fpr")
    @classmethod
    def _fpr_keys(cls, table: dict[str, float]) -> dict[str, float]:
        for key, value in table.items():
            try:
                fpr = float(key)
            except ValueError:
                raise ValueError(f"FPR key {key!r} is not a number") from None
            if not 0 <= fpr < 1 or not 0 <= value <= 1:
                raise ValueError(f"{key!r} = {value}: FPR must be in [0, 1) and TPR in [0, 1]")
        return table


class Spec(_Strict):
    """The whole spec. Some defaults follow from other settings (see ``_derived_defaults``)."""

    run: RunConfig = RunConfig()
    data: DataConfig = DataConfig(builtin="purchase-synth")
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    distill: DistillConfig = DistillConfig()
    softlabels: SoftLabelConfig = SoftLabelConfig()
    transfer: TransferConfig = TransferConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    audit: AuditConfig = AuditConfig()
    gate: GateConfig = GateConfig()

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, raw: Any) -> Any:
        """Defaults that depend on other keys, filled only where the user gave none.

        Without shadows the audit runs the threshold attacks and plants no canaries, and
        the gate reads the strongest attack that runs; the resolved spec shows the values.
        """
        if not isinstance(raw, dict):
            return raw
        if _is_text_data(raw.get("data")):
            raw = _lm_defaults(raw)
        audit = dict(raw.get("audit") or {}) if isinstance(raw.get("audit", {}), dict) else raw.get("audit")
        if not isinstance(audit, dict):
            return raw
        shadows = audit.get("shadows", AuditConfig.model_fields["shadows"].default)
        if isinstance(shadows, int) and shadows == 0:
            audit.setdefault("attacks", list(THRESHOLD_ATTACKS))
            audit.setdefault("canaries", 0)
        gate = raw.get("gate", {})
        if isinstance(gate, dict) and "attack" not in gate and isinstance(audit.get("attacks"), list):
            strongest = [a for a in ("lira_online", "rmia", "lira_offline", "reference", "min_k_pp", *THRESHOLD_ATTACKS,
                                     "zlib", "min_k") if a in audit["attacks"]]
            if strongest:
                raw = {**raw, "gate": {**gate, "attack": strongest[0]}}
        return {**raw, "audit": audit} if audit or "audit" in raw else raw

    @property
    def is_lm(self) -> bool:
        """True for the causal language-model track."""
        return self.teacher.kind == "causal-lm"

    @model_validator(mode="after")
    def _one_track(self) -> Spec:
        """Data, models, loss and attacks must all belong to one track (classifier or causal LM)."""
        text = self.data.is_text()
        problems = []
        for section in ("teacher", "student"):
            kind = getattr(self, section).kind
            if text and kind != "causal-lm":
                problems.append(f'[{section}].kind: text data (format = "jsonl" / builtin = "pii-corpus") needs '
                                f'kind = "causal-lm" (got {kind!r})')
            if not text and kind == "causal-lm":
                what = self.data.format or self.data.builtin or Path(str(self.data.members)).suffix.lstrip(".")
                problems.append(f'[{section}].kind: "causal-lm" needs text data (format = "jsonl" or builtin = '
                                f'"pii-corpus"), got {what!r}')
        if text:
            bad = [a for a in self.audit.attacks if a not in LM_ATTACKS]
            if bad:
                problems.append(f"[audit].attacks: {bad} are classifier attacks; a causal LM takes {list(LM_ATTACKS)}")
            if self.audit.shadows:
                problems.append(f"[audit].shadows: shadow pipelines are not supported for causal LMs (got "
                                f"{self.audit.shadows}); set shadows = 0")
            if self.audit.backend != "local":
                problems.append(f"[audit].backend: {self.audit.backend!r} distributes shadow pipelines, which a causal-LM "
                                'audit does not train; leave backend = "local"')
            if self.privacy.mechanism != "none":
                problems.append(f"[privacy].mechanism: {self.privacy.mechanism!r} is not supported for causal LMs; "
                                'use "none"')
            if self.gate.population != "all":
                problems.append('[gate].population: a causal-LM audit has population "all" only')
            knobs = [name for name, off in (("[softlabels]", self.softlabels.is_identity()),
                                            ("[transfer]", self.transfer.is_identity()),
                                            ("[teacher].ensemble", self.teacher.ensemble == 1),
                                            ("[teacher].label_smoothing", self.teacher.label_smoothing == 0.0)) if not off]
            if knobs:
                problems.append(f"{', '.join(knobs)}: the classifier defense knobs are not supported for causal LMs; "
                                "leave them at their defaults ([distill] top_k and temperature apply)")
        else:
            bad = [a for a in self.audit.attacks if a in LM_ATTACKS and a != "loss"]
            if bad:
                problems.append(f"[audit].attacks: {bad} are language-model attacks; a classifier takes "
                                f"{[*THRESHOLD_ATTACKS, *SHADOW_ATTACKS]}")
            if self.distill.loss != "kl":
                problems.append(f'[distill].loss: classifiers distill with "kl" (got {self.distill.loss!r})')
            lm_gate = [k for k in ("max_mean_exposure_bits", "max_pii_exact_match", "max_perplexity_ratio")
                       if getattr(self.gate, k) is not None]
            if lm_gate:
                problems.append(f"[gate]: {lm_gate} apply to causal LMs only")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _one_kind_of_ensemble(self) -> Spec:
        if self.teacher.ensemble > 1 and self.privacy.mechanism != "none":
            raise ValueError(f'[teacher].ensemble = {self.teacher.ensemble} is the non-private ensemble; with mechanism = '
                             f'"{self.privacy.mechanism}" leave it at 1 (PATE sets its size with [privacy].teachers)')
        if self.teacher.ensemble > 1 and self.teacher.path is not None:
            raise ValueError("[teacher].ensemble trains teachers; it cannot be combined with [teacher].path")
        return self

    @model_validator(mode="after")
    def _release_knobs_fit_the_mechanism(self) -> Spec:
        if self.privacy.mechanism == "pate" and not (self.softlabels.is_identity() and self.transfer.is_identity()):
            raise ValueError('[softlabels] and [transfer] knobs apply to soft labels; mechanism = "pate" releases '
                             "noisy votes (leave those sections at their defaults)")
        return self

    @model_validator(mode="after")
    def _gate_reads_what_the_audit_measures(self) -> Spec:
        if self.gate.attack not in self.audit.attacks:
            raise ValueError(f"[gate].attack = {self.gate.attack!r} is not among [audit].attacks {self.audit.attacks}")
        if self.gate.population == "canaries" and self.audit.canaries == 0:
            raise ValueError('[gate].population = "canaries" needs [audit].canaries > 0')
        return self

    @model_validator(mode="after")
    def _pate_trains_its_own_teachers(self) -> Spec:
        if self.privacy.mechanism == "pate" and self.teacher.path is not None:
            raise ValueError('[teacher].path cannot be used with [privacy].mechanism = "pate": PATE trains its '
                             "ensemble on partitions of the members; drop path or the mechanism")
        return self

    def section_dict(self, section: str) -> dict[str, Any]:
        """One section as plain JSON-able data (what stage fingerprints hash)."""
        return getattr(self, section).model_dump(mode="json")

    def to_toml(self) -> str:
        return tomli_w.dumps(_drop_none(self.model_dump(mode="json")))


# Defaults of the causal-LM track where the classifier defaults make no sense (sized for the
# built-in pii-corpus of ~300 kB on 2 CPU cores; see README, "Language models").
LM_DEFAULTS: dict[str, dict[str, Any]] = {
    "teacher": {"kind": "causal-lm", "epochs": 8, "batch_size": 16, "lr": 3e-3, "val_fraction": 0.0},
    "student": {"kind": "causal-lm", "epochs": 8, "batch_size": 16, "lr": 3e-3, "val_fraction": 0.0},
    "audit": {"shadows": 0, "canaries": 0, "attacks": list(LM_ATTACKS)},
    "gate": {"max_accuracy_gap": None, "max_mean_exposure_bits": 4.0, "max_perplexity_ratio": 1.15},
}


def _is_text_data(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    if data.get("builtin") is not None:
        return data.get("builtin") in TEXT_BUILTINS
    if data.get("format") is not None:
        return data.get("format") == "jsonl"
    return isinstance(data.get("members"), str) and data["members"].lower().endswith(".jsonl")


def _lm_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill the causal-LM defaults of :data:`LM_DEFAULTS` where the user gave none."""
    out = dict(raw)
    for section, defaults in LM_DEFAULTS.items():
        given = out.get(section, {})
        if isinstance(given, dict):
            out[section] = {**defaults, **given}
    return out


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def _format_errors(source: str, error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = [str(p) for p in item["loc"]]
        where = f"[{loc[0]}]" + "".join(f".{p}" for p in loc[1:]) + ": " if loc else ""  # whole-spec checks name their keys
        if item["type"] == "extra_forbidden":
            parts.append(f"{where}unknown key")
        else:
            msg = item["msg"].removeprefix("Value error, ")
            shown = item.get("input")
            got = f" (got {shown!r})" if not isinstance(shown, dict) and "input" in item else ""
            parts.append(f"{where}{msg}{got}")
    return f"{source}: " + "; ".join(parts)


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    data = raw.get("data")
    if isinstance(data, dict):
        for role in (*ROLES, *LM_FILES):
            if isinstance(data.get(role), str):
                data[role] = str((base / data[role]).resolve())
    for section in ("teacher", "student"):
        table = raw.get(section)
        if isinstance(table, dict):
            if isinstance(table.get("path"), str):
                table["path"] = str((base / table["path"]).resolve())
            tokenizer = table.get("tokenizer")
            if isinstance(tokenizer, dict) and isinstance(tokenizer.get("path"), str):
                table["tokenizer"] = {**tokenizer, "path": str((base / tokenizer["path"]).resolve())}


def parse_spec(raw: dict[str, Any], *, base_dir: Path, source: str = "spec") -> Spec:
    """Validate a parsed TOML table; relative paths are taken from ``base_dir``."""
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    _resolve_paths(raw, base_dir)
    try:
        return Spec.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_errors(source, error)) from None


def load_spec(path: str | Path | None) -> Spec:
    """Load and validate a spec file; ``None`` gives the built-in demo spec."""
    if path is None:
        return demo_spec()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: spec file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    return parse_spec(raw, base_dir=path.resolve().parent, source=str(path))


def demo_spec() -> Spec:
    """The built-in demo: purchase-synth with few members, so memorization is visible."""
    return Spec(run=RunConfig(name="demo"))
