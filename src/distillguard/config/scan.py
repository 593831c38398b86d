"""``[scan]``: the model a user brings to ``distillguard scan``, or its saved predictions.

A scan spec is a classifier spec with a ``[scan]`` table: ``[data]``, ``[audit]`` and
``[gate]`` mean what they mean for ``run``, ``[teacher]`` (and ``[privacy]``) is the
training recipe the shadows replay, when the user knows it. The defaults that follow from
``[scan]`` (no shadows without a recipe, the gate on target ``"model"``) are filled in by
:func:`with_scan_defaults`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from distillguard.attack_names import LABEL_ONLY_ATTACKS, THRESHOLD_ATTACKS
from distillguard.config.base import Section

#: The report's target name for the scanned model.
SCAN_TARGET = "model"
#: Reference models a scan without a recipe trains on non-member data (config/audit.py reference_models).
DEFAULT_REFERENCE_MODELS = 8


class ScanConfig(Section):
    model: Path | None = Field(
        None, description="The model to audit: a distillguard teacher or deploy folder (config.json + "
                          "model.safetensors), a .onnx file (run with onnxruntime, from the serve extra; input = the encoded feature rows, "
                          "first output = logits or probabilities), or a local Hugging Face folder. Exactly one of "
                          "model and predictions.")
    predictions: Path | None = Field(
        None, description="A Parquet or CSV file of the model's outputs on the audited records: example_id "
                          '("members:ROW" / "nonmembers:ROW", ROW the 0-based row in that [data] file), is_member, '
                          "and one column per class (named as the classes) of logits or probabilities (every value in [0, 1]: "
                          "probabilities, rows summing to 1). Labels come from [data].")
    recipe: bool = Field(
        False, description="[teacher] (and [privacy]) describe how the model was trained, so shadows replay that "
                           "recipe and LiRA/RMIA run. Unset: true when the spec has a [teacher] table.")

    @model_validator(mode="after")
    def _one_source(self) -> ScanConfig:
        if (self.model is None) == (self.predictions is None):
            given = "both" if self.model is not None else "neither"
            raise ValueError(f"give exactly one of model = PATH and predictions = PATH (got {given})")
        return self


def with_scan_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw scan spec with the defaults ``[scan]`` implies, where the user set none.

    ``recipe`` defaults to whether ``[teacher]`` is there; without a recipe no shadows run
    (``[audit] shadows = 0``) and reference models trained on non-member data calibrate
    offline LiRA and RMIA (``reference_models = 8``; a predictions file has no test-set
    outputs, so offline LiRA only); the gate judges the scanned model and has no student.
    """
    scan = raw.get("scan")
    if not isinstance(scan, dict):
        return raw
    scan = {**scan}
    scan.setdefault("recipe", "teacher" in raw)
    raw = {**raw, "scan": scan}
    audit = raw.get("audit", {})
    if isinstance(audit, dict) and scan["recipe"] is False:
        audit = {**audit, "shadows": audit.get("shadows", 0)}
        if audit["shadows"] == 0:
            audit.setdefault("reference_models", DEFAULT_REFERENCE_MODELS)
        if "attacks" not in audit:
            references = ["lira_offline", "rmia"] if audit.get("reference_models") else []
            if scan.get("predictions") is not None:  # no test-set outputs: no RMIA population, no model to query
                audit["attacks"] = [*THRESHOLD_ATTACKS, *references[:1]]
            else:  # a model answers queries: the label-only attacks (σ at its default, no shadows to choose it)
                label_only = list(LABEL_ONLY_ATTACKS) if audit.get("label_only_queries") != 0 else []
                audit["attacks"] = [*THRESHOLD_ATTACKS, *references, *label_only]
        raw["audit"] = audit
    gate = raw.get("gate", {})
    if isinstance(gate, dict):
        raw["gate"] = {"target": SCAN_TARGET, "max_accuracy_gap": None, **gate}
    return raw
