"""The whole spec: one model per track (classifier or causal LM), joined as a tagged union.

The track is not a key the user writes: it follows from the data (text, i.e. JSONL files
or the built-in ``pii-corpus``, is the causal-LM track). :meth:`Spec.model_validate`
derives it from the raw spec and validates against that track's model, whose rules say
which models, losses, attacks and defenses the track takes. Checks that span several
sections collect every problem and raise them together, each naming its keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

import tomli_w
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from distillguard.attack_names import (CLASSIFIER_ATTACKS, LABEL_ONLY_ATTACKS, LM_ATTACKS, SELECTED_ATTACK, THRESHOLD_ATTACKS,
                                       strongest_attack)
from distillguard.config.audit import OFFLINE_REFERENCE_ATTACKS, AuditConfig
from distillguard.config.base import Section
from distillguard.config.data import TEXT_BUILTINS, DataConfig, is_text_classification_data, is_text_data
from distillguard.config.deploy import (CLASSIFIER_RELEASE_KEYS, LM_RELEASE_KEYS, DeployConfig, audited_generation,
                                         generation_policy)
from distillguard.config.distill import DistillConfig
from distillguard.config.gate import LM_GATE_KEYS, GateConfig
from distillguard.config.lm import student_start_problems, with_lm_defaults
from distillguard.config.models import StudentConfig, TeacherConfig, with_text_clf_defaults
from distillguard.config.privacy import PrivacyConfig
from distillguard.config.run import RunConfig
from distillguard.config.scan import SCAN_TARGET, ScanConfig, with_scan_defaults
from distillguard.config.softlabels import SoftLabelConfig, TransferConfig, with_defended_release

CLASSIFIER_TRACK = "classifier"
LM_TRACK = "causal-lm"


class Spec(Section):
    """The whole spec. Some defaults follow from other settings (see ``_derived_defaults``).

    A loaded spec is a :class:`ClassifierSpec` or an :class:`LMSpec`; build one with
    :meth:`model_validate` (or :func:`~distillguard.config.parse_spec`), which picks the track.
    """

    track: ClassVar[str]

    run: RunConfig = Field(RunConfig(), description="Name, seed and checkpointing of the run.")
    data: DataConfig = Field(DataConfig(builtin="purchase-synth"), description="The four roles' records.")
    teacher: TeacherConfig = Field(TeacherConfig(), description="The model trained on the private members.")
    student: StudentConfig = Field(StudentConfig(), description="The model distilled on the transfer set.")
    distill: DistillConfig = Field(DistillConfig(), description="How the student learns the teacher's labels.")
    softlabels: SoftLabelConfig = Field(SoftLabelConfig(), description="What the teacher releases (classifiers).")
    transfer: TransferConfig = Field(TransferConfig(), description="Which transfer records are labeled (classifiers).")
    privacy: PrivacyConfig = Field(PrivacyConfig(), description="Formal privacy: DP-SGD or PATE.")
    audit: AuditConfig = Field(AuditConfig(), description="The membership-inference audit.")
    gate: GateConfig = Field(GateConfig(), description="Pass/fail thresholds on the audit's results.")
    deploy: DeployConfig = Field(DeployConfig(), description="What the served student releases, and the server's "
                                                             "limits (classifiers).")
    scan: ScanConfig | None = Field(None, description="distillguard scan: the model (or predictions) to audit "
                                                      "instead of a trained pipeline.")

    def __init__(self, /, **sections: Any) -> None:
        if type(self) is Spec:
            raise TypeError("Spec is the union of ClassifierSpec and LMSpec: build one with Spec.model_validate(...), "
                            "parse_spec or load_spec, which pick the track from the data")
        super().__init__(**sections)

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Spec:
        """Validate ``obj``; on :class:`Spec` itself, against the track its data selects."""
        if cls is not Spec:
            return super().model_validate(obj, **options)
        try:
            return _TRACKS.validate_python(obj, **options)
        except ValidationError as error:
            raise _without_track(error) from None

    @model_validator(mode="before")
    @classmethod
    def _derived_defaults(cls, raw: Any) -> Any:
        """Defaults that depend on other keys, filled only where the user gave none.

        Without shadows the audit runs the threshold attacks and plants no canaries, and
        the gate reads the strongest attack that runs; the resolved spec shows the values.
        """
        if not isinstance(raw, dict):
            return raw
        user_attacks = isinstance(raw.get("audit"), dict) and "attacks" in raw["audit"]
        raw = with_scan_defaults(raw)  # first: whether the user gave a recipe ([teacher]) decides the scan's shadows
        if is_text_data(raw.get("data")):
            raw = with_lm_defaults(raw)
        else:
            raw = with_defended_release(raw, text=is_text_classification_data(raw.get("data")))
            if is_text_classification_data(raw.get("data")):
                raw = with_text_clf_defaults(raw)
        audit = dict(raw.get("audit") or {}) if isinstance(raw.get("audit", {}), dict) else raw.get("audit")
        if not isinstance(audit, dict):
            return raw
        shadows = audit.get("shadows", AuditConfig.model_fields["shadows"].default)
        if isinstance(shadows, int) and shadows == 0:
            references = audit.get("reference_models", 0)
            offline = list(OFFLINE_REFERENCE_ATTACKS) if isinstance(references, int) and references >= 2 else []
            audit.setdefault("attacks", [*THRESHOLD_ATTACKS, *offline])
            audit.setdefault("canaries", 0)
        elif isinstance(shadows, int) and shadows < 4:  # too few to hold one out for "strongest"
            audit.setdefault("attacks", [a for a in CLASSIFIER_ATTACKS if a != SELECTED_ATTACK])
        if audit.get("label_only_queries") == 0 and "attacks" not in audit:  # 0 turns the label-only attacks off
            audit["attacks"] = [a for a in CLASSIFIER_ATTACKS if a not in LABEL_ONLY_ATTACKS]
        if is_text_classification_data(raw.get("data")) and not user_attacks:  # Gaussian noise means nothing on ids
            audit["attacks"] = [a for a in audit.get("attacks", CLASSIFIER_ATTACKS) if a != "label_noise"]
        gate = raw.get("gate", {})
        attacks = audit.get("attacks", list(CLASSIFIER_ATTACKS))
        if isinstance(gate, dict) and "attack" not in gate and isinstance(attacks, list):
            strongest = strongest_attack(attacks)
            if strongest is not None:
                raw = {**raw, "gate": {**gate, "attack": strongest}}
        return {**raw, "audit": audit} if audit or "audit" in raw else raw

    @property
    def is_lm(self) -> bool:
        """True for the causal language-model track."""
        return self.teacher.kind == "causal-lm"

    @model_validator(mode="after")
    def _sections_fit_together(self) -> Spec:
        """Every cross-section rule, the track's first; all problems are raised as one error."""
        problems = [*self._track_problems(), *self._ensemble_problems(), *self._release_problems(),
                    *self._gate_problems(), *self._pate_problems(), *self._scan_problems()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _track_problems(self) -> list[str]:
        """What this track does not take (each track says)."""
        raise NotImplementedError

    def _ensemble_problems(self) -> list[str]:
        problems = []
        if self.teacher.ensemble > 1 and self.privacy.mechanism != "none":
            problems.append(f'[teacher].ensemble = {self.teacher.ensemble} is the non-private ensemble; with mechanism '
                            f'= "{self.privacy.mechanism}" leave it at 1 (PATE sets its size with [privacy].teachers)')
        if self.teacher.ensemble > 1 and self.teacher.path is not None:
            problems.append("[teacher].ensemble trains teachers; it cannot be combined with [teacher].path")
        split = self.teacher.split_ai
        if split is not None:
            clash = [name for name, on in (("[teacher].ensemble > 1", self.teacher.ensemble > 1),
                                           ("[teacher].path", self.teacher.path is not None),
                                           (f'[privacy].mechanism = "{self.privacy.mechanism}"',
                                            self.privacy.mechanism != "none")) if on]
            if clash:
                problems.append(f"[teacher.split_ai] trains its own {split.k} sub-teachers; it cannot be combined "
                                f"with {', '.join(clash)}")
            if split.self_distill and not self.transfer.is_identity():
                chosen = ", ".join(f"{k} = {v!r}" for k, v in self.section_dict("transfer").items()
                                   if v != TransferConfig.model_fields[k].default)
                problems.append(f"[transfer] {chosen}: [teacher.split_ai] self_distill = true labels every member's "
                                "own input and no public transfer row, so there is nothing to select; remove "
                                "[transfer] or set self_distill = false")
        if self.teacher.hamp is not None and self.teacher.label_smoothing > 0:
            problems.append("[teacher.hamp] replaces the one-hot targets that [teacher].label_smoothing smooths; "
                            "set label_smoothing = 0 (HAMP's gamma sets how soft the targets are)")
        if self.teacher.hamp is not None and self.teacher.path is not None:
            problems.append("[teacher.hamp] is a training recipe; it cannot be combined with [teacher].path")
        if self.teacher.hamp is not None and self.privacy.mechanism == "dp-sgd":
            problems.append('[teacher.hamp] is not replayed by DP-SGD training; with mechanism = "dp-sgd" leave it out')
        return problems

    def _release_problems(self) -> list[str]:
        if self.privacy.mechanism == "pate" and not (self.softlabels.is_identity() and self.transfer.is_identity()):
            return ['[softlabels] and [transfer] knobs apply to soft labels; mechanism = "pate" releases '
                    "noisy votes (leave those sections at their defaults)"]
        return []

    def _gate_problems(self) -> list[str]:
        problems = []
        if self.gate.attack not in self.audit.attacks:
            problems.append(f"[gate].attack = {self.gate.attack!r} is not among [audit].attacks {self.audit.attacks}")
        if self.gate.population == "canaries" and self.audit.canaries == 0:
            problems.append('[gate].population = "canaries" needs [audit].canaries > 0')
        if self.gate.population == "canaries" and self.gate.attack in LABEL_ONLY_ATTACKS:
            problems.append(f'[gate].attack = {self.gate.attack!r} queries the model and is scored on the audit pool only; '
                            'use population = "all" or another attack')
        return problems

    def _pate_problems(self) -> list[str]:
        if self.privacy.mechanism == "pate" and self.teacher.path is not None:
            return ['[teacher].path cannot be used with [privacy].mechanism = "pate": PATE trains its '
                    "ensemble on partitions of the members; drop path or the mechanism"]
        return []

    def _scan_problems(self) -> list[str]:
        if self.scan is None:
            return [f'[gate].target = "{SCAN_TARGET}" is the model of distillguard scan; add [scan] or judge '
                    '"teacher" / "student"'] if self.gate.target == SCAN_TARGET else []
        problems = []
        if self.is_lm:
            problems.append("[scan]: scan audits classifiers; audit a causal LM with [teacher] path and distillguard run")
        if self.gate.target != SCAN_TARGET:
            problems.append(f'[gate].target: a scan has one model, "{SCAN_TARGET}" (got {self.gate.target!r})')
        if self.gate.max_accuracy_gap is not None:
            problems.append("[gate].max_accuracy_gap: a scan has no student to compare with; leave it out")
        if self.audit.shadows and not self.scan.recipe:
            problems.append(f"[audit].shadows = {self.audit.shadows}: shadows replay the model's training recipe; "
                            "give it in [teacher] (or [scan] recipe = true) or set shadows = 0")
        if self.audit.shadows and self.scan.predictions is not None:
            problems.append(f"[audit].shadows = {self.audit.shadows}: shadows are scored on the records' features, "
                            "and a predictions file has only outputs; set shadows = 0")
        if self.privacy.mechanism == "pate" or self.audit.backend != "local":
            problems.append('[privacy]/[audit]: a scan replays plain or DP-SGD teachers locally (no "pate", '
                            'backend = "local")')
        return problems

    def section_dict(self, section: str) -> dict[str, Any]:
        """One section as plain JSON-able data (what stage fingerprints hash)."""
        return getattr(self, section).model_dump(mode="json")

    def to_toml(self) -> str:
        """The resolved spec as TOML: what a run records.

        Unset optional keys are left out, and so are the tables of a built-in data set the
        run does not use (``[data.synth]`` outside purchase-synth, ``[data.pii_corpus]``
        outside pii-corpus, ``[data.news_pii]`` outside news-pii); loading the file gives the
        same spec either way.
        """
        resolved = _drop_none(self.model_dump(mode="json"))
        for table, builtin in (("synth", "purchase-synth"), ("pii_corpus", "pii-corpus"), ("news_pii", "news-pii")):
            if self.data.builtin != builtin:
                resolved["data"].pop(table, None)
        return tomli_w.dumps(resolved)


class ClassifierSpec(Spec):
    """The classifier track: tabular or image data, ``mlp`` / ``cnn`` models, every defense knob."""

    track: ClassVar[str] = CLASSIFIER_TRACK

    def _track_problems(self) -> list[str]:
        problems = []
        for section in ("teacher", "student"):
            if getattr(self, section).kind == "causal-lm":
                what = self.data.format or self.data.builtin or Path(str(self.data.members)).suffix.lstrip(".")
                problems.append(f'[{section}].kind: "causal-lm" needs text data (format = "jsonl" or builtin = '
                                f'"pii-corpus" | "news-pii"), got {what!r}')
        problems += self._text_problems()
        if self.transfer.synthetic is not None and self.transfer.synthetic.mechanism == "dp-lm":
            problems.append('[transfer.synthetic].mechanism: "dp-lm" trains a causal-LM generator on text; a '
                            'classifier takes "mst"')
        bad = [a for a in self.audit.attacks if a in LM_ATTACKS and a != "loss"]
        if bad:
            problems.append(f"[audit].attacks: {bad} are language-model attacks; a classifier takes "
                            f"{list(CLASSIFIER_ATTACKS)}")
        if self.distill.loss != "kl":
            problems.append(f'[distill].loss: classifiers distill with "kl" (got {self.distill.loss!r})')
        lm_gate = [key for key in LM_GATE_KEYS if getattr(self.gate, key) is not None]
        if lm_gate:
            problems.append(f"[gate]: {lm_gate} apply to causal LMs only")
        lm_release = [k for k in LM_RELEASE_KEYS if getattr(self.deploy, k) != getattr(DeployConfig(), k)]
        if lm_release:
            problems.append(f"[deploy]: {', '.join(lm_release)} apply to causal LMs' generation only")
        problems += student_start_problems(self.student, self.teacher, private=None, lm=False)
        lm_store = self.softlabels.lm_store_changed()
        if lm_store:
            problems.append(f"[softlabels]: {lm_store} set the causal-LM soft-label store or its private release; "
                            "leave them out for classifiers")
        return problems

    def _text_problems(self) -> list[str]:
        """hf-text models go with labelled texts, and take the plain (non-private, single-teacher) recipe."""
        text = self.data.is_text_classification()
        problems = [f'[{section}].kind: labelled texts ([data.text] or builtin = "bbc-news") need kind = "hf-text" '
                    f'(got {getattr(self, section).kind!r})' if text else
                    f'[{section}].kind: "hf-text" needs labelled texts: builtin = "bbc-news" or [data.text] '
                    f'with the four files' for section in ("teacher", "student")
                    if (getattr(self, section).kind == "hf-text") != text]
        if text and self.privacy.mechanism != "none":
            problems.append(f'[privacy].mechanism: {self.privacy.mechanism!r} is not supported for kind = "hf-text"; '
                            'use "none"')
        if text and self.teacher.ensemble > 1:
            problems.append('[teacher].ensemble: not supported for kind = "hf-text"; leave it at 1')
        if text and self.teacher.split_ai is not None:
            problems.append('[teacher.split_ai]: not supported for kind = "hf-text" (its member table hashes numeric '
                            "rows); leave it out")
        if text and "label_noise" in self.audit.attacks:
            problems.append('[audit].attacks: "label_noise" adds Gaussian noise to numeric features, which token ids '
                            'are not; not supported for kind = "hf-text" (label_gap is)')
        if text and self.transfer.synthetic is not None:
            problems.append("[transfer.synthetic]: the DP generator models table columns, not token ids; not supported "
                            'for kind = "hf-text"')
        if text and self.transfer.select == "far_from_private":
            problems.append('[transfer].select: "far_from_private" measures feature distances, which token ids do '
                            'not have; not supported for kind = "hf-text"')
        return problems


class LMSpec(Spec):
    """The causal-LM track: text data, ``causal-lm`` models, the LM attacks and probes, no shadows."""

    track: ClassVar[str] = LM_TRACK

    def _track_problems(self) -> list[str]:
        problems = [f'[{section}].kind: text data (format = "jsonl" / builtin = "pii-corpus") needs '
                    f'kind = "causal-lm" (got {getattr(self, section).kind!r})'
                    for section in ("teacher", "student") if getattr(self, section).kind != "causal-lm"]
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
        classifier_release = [k for k in CLASSIFIER_RELEASE_KEYS if getattr(self.deploy, k) != getattr(DeployConfig(), k)]
        if classifier_release:
            problems.append(f"[deploy]: {', '.join(classifier_release)} set a classifier's release; a causal LM's is "
                            "decoding, generation_top_k and max_new_tokens")
        try:
            generation_policy(self.deploy, audited_generation(self.audit.lm))
        except ValueError as why:
            problems.append(f"[deploy]: {why}")
        problems += student_start_problems(self.student, self.teacher, private=self.softlabels.private_prediction)
        return problems + self._synthetic_problems() + self._classifier_knob_problems()

    def _synthetic_problems(self) -> list[str]:
        """``[transfer.synthetic]`` for causal LMs: the dp-lm generator, and not beside private prediction."""
        synthetic = self.transfer.synthetic
        if synthetic is None:
            return []
        problems = []
        if synthetic.mechanism != "dp-lm":
            problems.append(f'[transfer.synthetic].mechanism: {synthetic.mechanism!r} models table columns; a causal '
                            'LM takes "dp-lm"')
        if self.softlabels.private_prediction is not None:
            problems.append("[transfer.synthetic]: not supported with [softlabels] private_prediction (its public "
                            "model and queries are the transfer text's); use one of the two")
        return problems

    def _classifier_knob_problems(self) -> list[str]:
        transfer = self.transfer.model_copy(update={"synthetic": None})  # dp-lm synthetic text is the LM's own
        knobs = [name for name, off in (("[softlabels]", self.softlabels.is_identity()),
                                        ("[transfer]", transfer.is_identity()),
                                        ("[teacher].ensemble", self.teacher.ensemble == 1),
                                        ("[teacher.split_ai]", self.teacher.split_ai is None),
                                        ("[teacher.hamp]", self.teacher.hamp is None),
                                        ("[teacher].label_smoothing", self.teacher.label_smoothing == 0.0)) if not off]
        if not knobs:
            return []
        return [f"{', '.join(knobs)}: the classifier defense knobs are not supported for causal LMs; "
                "leave them at their defaults ([distill] top_k and temperature apply)"]


def _track_of(raw: Any) -> str:
    """The tag of the track a raw spec belongs to: its data's, as :meth:`DataConfig.is_text` reads it."""
    if isinstance(raw, Spec):
        return raw.track
    data = raw.get("data") if isinstance(raw, dict) else None
    if isinstance(data, DataConfig):
        return LM_TRACK if data.is_text() else CLASSIFIER_TRACK
    if not isinstance(data, dict) or is_text_classification_data(data):
        return CLASSIFIER_TRACK  # the default data is purchase-synth; labelled texts are classified
    if data.get("builtin") is not None:
        text = data["builtin"] in TEXT_BUILTINS
    elif data.get("format") is not None:
        text = data["format"] == "jsonl"
    else:
        members = data.get("members")
        text = isinstance(members, str | Path) and bool(members) and Path(members).suffix.lower() == ".jsonl"
    return LM_TRACK if text else CLASSIFIER_TRACK


_TRACKS: TypeAdapter[Spec] = TypeAdapter(
    Annotated[Annotated[ClassifierSpec, Tag(CLASSIFIER_TRACK)] | Annotated[LMSpec, Tag(LM_TRACK)],
              Discriminator(_track_of)])


def _without_track(error: ValidationError) -> ValidationError:
    """The same errors with the track tag dropped from their paths, so they read ``[teacher].lr``.

    Each error keeps its type and rendered message (rebuilt as a custom error, since not
    every built-in error type can be raised again from Python).
    """
    details = [{"type": PydanticCustomError(item["type"], item["msg"]), "input": item["input"],
                "loc": item["loc"][1:] if item["loc"][:1] in ((CLASSIFIER_TRACK,), (LM_TRACK,)) else item["loc"]}
               for item in error.errors()]
    return ValidationError.from_exception_data("Spec", details)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value
