"""``[softlabels]`` and ``[transfer]``: what the teacher releases, and on which records.

Both are classifier defense knobs applied in the label stage; at their defaults they
release the teacher's full probabilities on every transfer record.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from distillguard.config.base import Section


LM_LOGPROB_BITS = (2, 3, 4, 5, 6, 7, 8, 16, 32)  # what lm.softlabel_codec writes
LM_STORE_FIELDS = ("logprob_bits", "private_prediction")  # causal-LM only: the store and its private release


class PrivatePredictionConfig(Section):
    """causal-lm: private prediction (PMixED, Flemings et al. 2024) from a partitioned teacher ensemble.

    The members are split into ``shards`` disjoint parts by a seeded hash of each document;
    one teacher per shard is fine-tuned from a public model trained on the transfer text only.
    At each queried position of the transfer text, each shard teacher's next-token
    distribution is mixed with the public model's just enough to stay within a max-divergence
    ball around it, the mixtures are averaged, one token is sampled, and the stored label is
    ``(1 - sample_weight) * public + sample_weight * onehot(sample)``. The ball's radius is
    chosen so that the label stage's queries together cost at most ``epsilon``.
    """

    shards: int = Field(..., ge=2, le=256, description="Disjoint member shards, one teacher each.")
    epsilon: float = Field(8.0, gt=0, le=100, description="Target ε of the whole label stage (all queries).")
    delta: float | None = Field(None, gt=0, lt=1, description="δ of (ε, δ); default min(1 / (10 n_members), 1e-5).")
    query_fraction: float = Field(1.0, gt=0, le=1, description="Share of the transfer text's positions answered "
                                  "privately (a seeded public choice); the others get the public model's labels.")
    sample_weight: float = Field(0.5, gt=0, lt=1, description="Weight of the private sample's one-hot in the "
                                 "stored label; the rest is the public model's distribution.")


RELEASE_KEYS = ("labels", "top_k", "round_to", "mix_uniform", "logit_noise")
DEFENDED_LABELS = "hard"
# The rest of the defended default (docs/results/real-data.md): a label-smoothed teacher, and
# only the 70 % of transfer records farthest from the members are labeled.
DEFENDED_TEACHER = {"label_smoothing": 0.3}
DEFENDED_TRANSFER = {"select": "far_from_private", "keep_fraction": 0.7}
TEACHER_DEFENSE_KEYS = ("path", "label_smoothing", "weight_decay", "ensemble", "split_ai", "hamp")
TRANSFER_RULE_KEYS = ("select", "keep_fraction", "synthetic")


def with_defended_release(raw: dict[str, Any], *, text: bool = False) -> dict[str, Any]:
    """A classifier spec with the defended default wherever the user chose no defense of that kind.

    The default is hard labels from a label-smoothed teacher (0.3) on the 70 % of transfer
    records farthest from the members. Why: on purchase-synth (the demo) hard labels alone
    leave the strongest attack's AUC at 0.60 and fail the gate, the full recipe gives 0.55
    and passes at 2.4 points *above* the teacher's accuracy; on the four real data sets of
    docs/results/real-data.md it passes the gate everywhere too. Plain KD leaks the
    mislabeled canaries and fails on two of them.

    Each part is filled only where nothing of its kind was chosen: the release unless a
    release key of ``[softlabels]`` is set or PATE releases its own votes (``labels =
    "soft"`` is plain KD); the teacher's smoothing only for a teacher trained here without
    DP, PATE or any teacher-side key; the transfer rule only when no release key, no
    teacher-side key and no ``[transfer]`` rule is set (so a spec that asks for plain KD or
    for one defense gets that alone). Text classifiers get the hard labels only: token ids
    have no distance for the transfer rule, and the recipe was not measured on text. A scan
    trains no student.
    """
    softlabels, privacy = raw.get("softlabels", {}), raw.get("privacy", {})
    teacher, transfer = raw.get("teacher", {}), raw.get("transfer", {})
    if not all(isinstance(section, dict) for section in (softlabels, privacy, teacher, transfer)) or "scan" in raw:
        return raw
    chose_release = any(key in softlabels for key in RELEASE_KEYS)
    mechanism = privacy.get("mechanism", "none")
    if chose_release or mechanism == "pate":
        return raw
    out = {**raw, "softlabels": {**softlabels, "labels": DEFENDED_LABELS}}
    if text or mechanism != "none" or any(key in teacher for key in TEACHER_DEFENSE_KEYS):
        return out
    out["teacher"] = {**teacher, **DEFENDED_TEACHER}
    if not any(key in transfer for key in TRANSFER_RULE_KEYS):
        out["transfer"] = {**transfer, **DEFENDED_TRANSFER}
    return out


LM_RELEASE_KEYS = (*RELEASE_KEYS, "private_prediction")
# The causal-LM default release (docs/results/lm-privacy-utility.md): private prediction with few queries.
DEFENDED_LM_RELEASE: dict[str, Any] = {"shards": 8, "epsilon": 2.0, "query_fraction": 0.05}


def with_defended_lm_release(raw: dict[str, Any]) -> dict[str, Any]:
    """A causal-LM spec's release: private prediction (:data:`DEFENDED_LM_RELEASE`) unless the user chose one.

    Why: on the built-in pii-corpus plain KD's student fails the LM gate on membership
    (reference attack AUC 0.83), while this one passes it (AUC 0.52, perplexity 0.98x the
    teacher's; docs/results/lm-privacy-utility.md). As on the classifier track, any
    release key of ``[softlabels]`` means the user chose: ``private_prediction = false`` (or
    ``labels = "soft"``) is plain KD, ``private_prediction = true`` this default, a table
    its own settings. DP synthetic transfer text (``[transfer] synthetic``) is its own
    release; a scan trains no student.
    """
    softlabels, transfer = raw.get("softlabels", {}), raw.get("transfer", {})
    if not isinstance(softlabels, dict) or "scan" in raw:
        return raw
    chosen = softlabels.get("private_prediction")
    if chosen is False:
        return {**raw, "softlabels": {k: v for k, v in softlabels.items() if k != "private_prediction"}}
    if chosen is True:
        return {**raw, "softlabels": {**softlabels, "private_prediction": dict(DEFENDED_LM_RELEASE)}}
    if any(key in softlabels for key in LM_RELEASE_KEYS) or (isinstance(transfer, dict) and transfer.get("synthetic")):
        return raw
    return {**raw, "softlabels": {**softlabels, "private_prediction": dict(DEFENDED_LM_RELEASE)}}


class SoftLabelConfig(Section):
    """What the teacher releases to the student (applied in the label stage, at T=1).

    The knobs run in a fixed order: noise on the logits, hard labels, top-k, rounding,
    then uniform mixing (see :mod:`distillguard.train.label_defenses`).
    """

    labels: Literal["soft", "hard"] = Field("soft", description=(
        'hard: release the teacher\'s argmax only. A classifier spec that sets no release key of [softlabels] '
        '(labels, top_k, round_to, mix_uniform, logit_noise) and no PATE gets "hard", part of the defended default '
        '(docs/results/real-data.md); "soft" is plain KD.'))
    top_k: int | None = Field(None, ge=1, description="Release only the k largest probabilities, renormalized.")
    round_to: float | None = Field(None, gt=0, le=1, description="Round released probabilities to multiples of this step.")
    mix_uniform: float = Field(0.0, ge=0, le=1, description="Mix with the uniform distribution: (1-λ)p + λ/C.")
    logit_noise: float = Field(0.0, ge=0, description="σ of Gaussian noise added to the teacher's logits.")
    private_prediction: PrivatePredictionConfig | None = Field(
        None, description="causal-lm: release private predictions of a partitioned teacher ensemble mixed with a "
                          "public model (PMixED). A causal-LM spec that sets no release key of [softlabels] gets "
                          "{ shards = 8, epsilon = 2, query_fraction = 0.05 } (docs/results/lm-privacy-utility.md); "
                          "false: plain KD (the teacher's top-k labels), as labels = \"soft\" is.")
    logprob_bits: int = Field(
        4, description="causal-lm: bits per stored top-k log-probability in the soft-label store (2-8: quantized on "
                       "a log scale per token position, error <= half a step; 16 / 32: float16 / float32 values). "
                       "At k = 128 on the LM benchmark's teacher, 4 bits store 144 bytes per token "
                       "(the first layout: 393).")

    @field_validator("logprob_bits")
    @classmethod
    def _known_bits(cls, value: int) -> int:
        if value not in LM_LOGPROB_BITS:
            raise ValueError(f"must be one of {list(LM_LOGPROB_BITS)} (got {value})")
        return value

    def is_identity(self) -> bool:
        """True when every classifier knob is at its default: the full probabilities are released.

        The causal-LM store's encoding (``LM_STORE_FIELDS``) is not a release knob.
        """
        store = set(LM_STORE_FIELDS)
        return self.model_dump(exclude=store) == SoftLabelConfig().model_dump(exclude=store)

    def lm_store_changed(self) -> list[str]:
        """The causal-LM store fields set away from their defaults (a classifier spec must not set them)."""
        return [name for name in LM_STORE_FIELDS if getattr(self, name) != SoftLabelConfig.model_fields[name].default]

    def knobs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~distillguard.train.label_defenses.defend_soft_labels`."""
        return {"hard": self.labels == "hard", "top_k": self.top_k, "round_to": self.round_to,
                "mix_uniform": self.mix_uniform, "logit_noise": self.logit_noise}


DP_LM_FIELDS = ("epochs", "batch_size", "lr", "max_grad_norm", "accountant", "max_tokens")  # the generator's


class SyntheticTransferConfig(Section):
    """``[transfer.synthetic]``: a DP synthetic transfer set, for when no public data exist.

    The label stage fits a differentially private generator on the members (the teacher's
    training table, or its documents) and the teacher labels its samples instead of the
    transfer records; the student never sees a private record. The audit's shadows each fit
    their own generator on their own training set (see docs/defenses/synthetic-transfer.md).
    """

    mechanism: Literal["mst", "dp-lm"] = Field(
        "mst", description="mst: MST (McKenna et al. 2021), Gaussian-noised 1- and 2-way marginals on a tree, fitted "
                           "with Private-PGM; needs pip install \"distillguard[synth]\"; tables only. dp-lm: causal "
                           "LMs (the default there): a generator of the teacher's architecture trained with DP-SGD "
                           "(Opacus) on the member documents, then sampled.")
    epsilon: float = Field(3.0, gt=0, le=100, description="The generator's ε (its whole budget; mst: zCDP-accounted, "
                                                          "dp-lm: the DP-SGD noise is calibrated to it).")
    delta: float | None = Field(None, gt=0, lt=1, description="The generator's δ; default min(1/(10·members), 1e-5).")
    rows: int = Field(3000, ge=10, le=1_000_000, description="Synthetic rows (mst) or documents (dp-lm) sampled "
                                                             "(before copies of private records are dropped, which "
                                                             "more draws replace).")
    epochs: int = Field(4, ge=1, le=1000, description="dp-lm: DP-SGD epochs of the generator over the member documents.")
    batch_size: int = Field(64, ge=1, description="dp-lm: expected Poisson batch; each member document is in a batch "
                                                  "with probability batch_size / members.")
    lr: float = Field(3e-3, gt=0, description="dp-lm: AdamW learning rate of the generator.")
    max_grad_norm: float = Field(1.0, gt=0, description="dp-lm: per-document gradient clipping bound C.")
    accountant: Literal["prv", "rdp"] = Field("prv", description="dp-lm: Opacus accountant (prv: Gopi et al. 2021; "
                                                                 "rdp: Mironov 2017).")
    max_tokens: int | None = Field(None, ge=1, description="dp-lm: tokens per sampled document at most; default the "
                                                           "generator's context minus one.")

    @model_validator(mode="after")
    def _generator_fields(self) -> SyntheticTransferConfig:
        if self.mechanism == "mst":
            changed = [name for name in DP_LM_FIELDS
                       if getattr(self, name) != SyntheticTransferConfig.model_fields[name].default]
            if changed:
                raise ValueError(f"{changed} set the dp-lm generator; mechanism = \"mst\" takes epsilon, delta "
                                 "and rows only")
        return self


class TransferConfig(Section):
    """Which transfer records the teacher labels (after the leak guard)."""

    size: int | None = Field(None, ge=1, description="Label a random subset of this many transfer records.")
    select: Literal["all", "low_entropy", "far_from_private"] = Field(
        "all", description="low_entropy: keep the records the teacher is surest about (DMP); far_from_private: drop "
                           "the records nearest to a private record.")
    keep_fraction: float = Field(1.0, gt=0, le=1, description="Fraction of records the selection rule keeps.")
    synthetic: SyntheticTransferConfig | None = Field(
        None, description="Label DP synthetic rows fitted on the members instead of the transfer records (no public "
                          "data needed); size and select then apply to the synthetic rows.")

    @model_validator(mode="after")
    def _fraction_with_rule(self) -> TransferConfig:
        if self.select == "all" and self.keep_fraction != 1.0:
            raise ValueError('keep_fraction needs select = "low_entropy" | "far_from_private"')
        return self

    def is_identity(self) -> bool:
        """True when every record is labeled: no subset, no selection rule."""
        return self == TransferConfig()
