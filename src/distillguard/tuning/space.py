"""The search space of ``distillguard tune``: candidate defenses as spec overrides.

A candidate is a small, named set of overrides on the user's spec, one knob or a
combination. The default space is ordered by prior promise (the literature and the
reference measurements in the issue tracker), so a small budget evaluates the likely
winners first: hard or truncated labels and query selection address the "student parrots
the teacher" leak (Jagielski et al. 2023) at little accuracy cost; a higher temperature
was measured to leak *more*, so it comes late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distillguard.config import Spec
from distillguard.config.softlabels import DEFENDED_TEACHER, DEFENDED_TRANSFER
from distillguard.errors import ConfigError


@dataclass(frozen=True)
class Candidate:
    """One defense configuration: ``overrides[section][key] = value`` on the user's spec."""

    name: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, spec: Spec) -> Spec:
        """The user's spec with these overrides (validated like any spec)."""
        return override(spec, self.overrides)


def override(spec: Spec, overrides: dict[str, dict[str, Any]]) -> Spec:
    raw = spec.model_dump(mode="json")
    for section, values in overrides.items():
        if section not in raw or not isinstance(raw[section], dict):
            raise ConfigError(f"tune: unknown spec section [{section}]")
        raw[section] = {**raw[section], **values}
    try:
        return Spec.model_validate(raw)
    except Exception as error:  # pydantic's message names the field
        raise ConfigError(f"tune: candidate overrides {overrides} do not form a valid spec: {error}") from None


def default_space(spec: Spec, *, n_transfer: int) -> list[Candidate]:
    """The candidates tried by default, most promising first; the first is the spec itself."""
    student_small = max(16, spec.student.hidden[0] // 4) if spec.student.hidden else 32
    undo = _without_defended_default(spec)
    space = [
        Candidate("your spec"),
        Candidate("hard labels only", _merged({"softlabels": {"labels": "hard"}}, undo)),
        Candidate("low-entropy transfer 50% + hard labels",
                  {"transfer": {"select": "low_entropy", "keep_fraction": 0.5}, "softlabels": {"labels": "hard"}}),
        Candidate("top-1 + uniform mix 0.5", {"softlabels": {"labels": "soft", "top_k": 1, "mix_uniform": 0.5}}),
        Candidate("logit noise σ=4 + hard labels", {"softlabels": {"logit_noise": 4.0, "labels": "hard"}}),
        Candidate("low-entropy transfer 50%", {"transfer": {"select": "low_entropy", "keep_fraction": 0.5},
                                               "softlabels": {"labels": "soft"}}),
        Candidate("far-from-private transfer 70% + hard labels",
                  {"transfer": {"select": "far_from_private", "keep_fraction": 0.7}, "softlabels": {"labels": "hard"}}),
        Candidate("regularised teacher (wd 5e-3, smoothing 0.1) + hard labels",
                  {"teacher": {"weight_decay": 5e-3, "label_smoothing": 0.1}, "softlabels": {"labels": "hard"}}),
        Candidate("teacher ensemble of 4 (subsample-and-aggregate)", {"teacher": {"ensemble": 4},
                                                                      "softlabels": {"labels": "soft"}}),
        Candidate("rounded labels (0.1)", {"softlabels": {"labels": "soft", "round_to": 0.1}}),
        Candidate("small student + hard labels",
                  {"student": {"hidden": [student_small]}, "softlabels": {"labels": "hard"}}),
        Candidate("half the transfer set + hard labels",
                  {"transfer": {"size": max(1, n_transfer // 2)}, "softlabels": {"labels": "hard"}}),
        Candidate("temperature 4", {"distill": {"temperature": 4.0}, "softlabels": {"labels": "soft"}}),
        Candidate("plain KD (soft labels)", _merged({"softlabels": {"labels": "soft"}}, undo)),  # the contrast
    ]
    if spec.teacher.split_ai is not None:  # Split-AI trains its own sub-teachers: no [teacher] ensemble
        space = [c for c in space if "ensemble" not in c.overrides.get("teacher", {})]
        if spec.teacher.split_ai.self_distill:  # no public row to select among
            space = [c for c in space if "transfer" not in c.overrides]
    space = _with_teacher_defenses(space, spec)
    return space[:1] + [c for c in space[1:] if _changes(spec, c.overrides)]


def _without_defended_default(spec: Spec) -> dict[str, dict[str, Any]]:
    """Overrides that take the defended default's teacher and transfer parts back out of ``spec``.

    The default spec already smooths the teacher and selects far-from-private transfer
    records (:func:`distillguard.config.softlabels.with_defended_release`), so "plain KD" and
    "hard labels only" must undo those parts to be what their names say.
    """
    undo: dict[str, dict[str, Any]] = {}
    if spec.teacher.label_smoothing == DEFENDED_TEACHER["label_smoothing"]:
        undo["teacher"] = {"label_smoothing": 0.0}
    if (spec.transfer.select, spec.transfer.keep_fraction) == tuple(DEFENDED_TRANSFER.values()):
        undo["transfer"] = {"select": "all", "keep_fraction": 1.0}
    return undo


def _merged(*parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for part in parts:
        for section, values in part.items():
            out[section] = {**out.get(section, {}), **values}
    return out


def _changes(spec: Spec, overrides: dict[str, dict[str, Any]]) -> bool:
    """True when ``overrides`` set some key to a value the spec does not already have."""
    current = spec.model_dump(mode="json")
    return any(current.get(section, {}).get(key) != value
               for section, values in overrides.items() for key, value in values.items()
               if not isinstance(value, dict)) or any(isinstance(v, dict) for values in overrides.values()
                                                      for v in values.values())


def _with_teacher_defenses(space: list[Candidate], spec: Spec) -> list[Candidate]:
    """Split-AI (SELENA) third and HAMP after the regularised teacher, where the spec allows them.

    Both change the teacher, so each trains its own shadow teachers (Split-AI: k per
    shadow, the search's most expensive candidate). Neither combines with a loaded teacher
    or DP-SGD, nor Split-AI with PATE or an ensemble, so they are left out there.
    """
    teacher, mechanism = spec.teacher, spec.privacy.mechanism
    trains_plainly = teacher.path is None and mechanism == "none"
    if trains_plainly and teacher.ensemble == 1 and teacher.split_ai is None:
        space.insert(2, Candidate("Split-AI teacher (k=10, l=3)", {"teacher": {"split_ai": {"k": 10, "l": 3}}}))
    smoothing_undone = _without_defended_default(spec).get("teacher", {})  # HAMP sets its own targets
    if teacher.path is None and mechanism != "dp-sgd" and teacher.hamp is None and (
            teacher.label_smoothing == 0 or smoothing_undone):
        at = next(i for i, c in enumerate(space) if c.name.startswith("regularised teacher")) + 1
        space.insert(at, Candidate("HAMP teacher (gamma 0.95, alpha 0.1)",
                                   {"teacher": {"hamp": {"gamma": 0.95, "alpha": 0.1}, **smoothing_undone}}))
    return space

