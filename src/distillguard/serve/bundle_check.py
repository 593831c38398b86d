"""What ``distillguard serve`` checks before it answers a query from a deploy folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillguard.bundle import Bundle, load_bundle
from distillguard.config.deploy import decoding_beyond, finer_than
from distillguard.errors import ArtifactError, DistillGuardError
from distillguard.runs import read_json, sha256_file
from distillguard.serve.schema import unknown_types


class GateFailedError(DistillGuardError):
    """The bundle's audit failed its gate: exit 1, as ``distillguard gate`` does."""

    exit_code = 1


def open_bundle(folder: Path, *, allow_failed_gate: bool = False) -> Bundle:
    """Load ``folder`` after checking its weights' hash, its release policy and its gate."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ArtifactError(f"{manifest_path}: not found; expected a deploy folder written by distillguard "
                            "(runs/NAME/deploy)")
    config_path = folder / "config.json"
    if is_lm_folder(folder):
        raise ArtifactError(f"{folder}: a causal language model; open it with open_lm_bundle")
    manifest = read_json(manifest_path)
    weights = folder / "model.safetensors"
    if weights.is_file() and manifest.get("student_sha256") != sha256_file(weights):
        raise ArtifactError(f"{weights}: sha256 differs from manifest.json's student_sha256; the bundle was "
                            "modified after export")
    bundle = load_bundle(folder)
    why = finer_than(bundle.release_, bundle.audited_output_)
    if why is not None:
        raise ArtifactError(f"{config_path}: release policy {why}; refusing to serve more than was audited")
    unknown = unknown_types(bundle.feature_types_)
    if unknown:
        name, kind = next(iter(unknown.items()))
        raise ArtifactError(f"{config_path}: feature {name!r} has type {kind!r}, which this server cannot check")
    if not manifest.get("gate_passed", False) and not allow_failed_gate:
        raise GateFailedError(f"{manifest_path}: the audit failed its release gate (see the run's report.html); "
                              "refusing to serve; pass --allow-failed-gate to serve it anyway")
    return bundle


def is_lm_folder(folder: Path) -> bool:
    """A Hugging Face causal-LM deploy folder rather than a classifier bundle."""
    config_path = folder / "config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    return "schema" not in config and ("model_type" in config or (folder / "tokenizer.json").exists())


@dataclass
class LMBundle:
    """A causal-LM deploy folder, checked: the student, its tokenizer, the decoding it may answer with."""

    model: Any
    tokenizer: Any
    generation: dict[str, Any]
    serving: dict[str, Any]


def open_lm_bundle(folder: Path, *, allow_failed_gate: bool = False) -> LMBundle:
    """Load a causal-LM deploy folder after checking its weights' hash, its decoding against the audit's, its gate."""
    from distillguard.lm.models import load_causal_lm

    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ArtifactError(f"{manifest_path}: not found; expected a deploy folder written by distillguard "
                            "(runs/NAME/deploy)")
    manifest = read_json(manifest_path)
    weights = folder / "model.safetensors"
    if not weights.is_file() or manifest.get("student_sha256") != sha256_file(weights):
        raise ArtifactError(f"{weights}: missing, or its sha256 differs from manifest.json's student_sha256; the "
                            "bundle was modified after export")
    generation, audited = manifest.get("generation"), manifest.get("audited_generation")
    if not isinstance(generation, dict) or not isinstance(audited, dict) or not isinstance(manifest.get("serving"), dict):
        raise ArtifactError(f"{manifest_path}: no generation policy (generation, audited_generation, serving); "
                            "the bundle predates `distillguard serve` for language models: run `distillguard "
                            "export` again")
    why = decoding_beyond(generation, audited)
    if why is not None:
        raise ArtifactError(f"{manifest_path}: generation policy {why}; refusing to serve more than was audited")
    if not manifest.get("gate_passed", False) and not allow_failed_gate:
        raise GateFailedError(f"{manifest_path}: the audit failed its release gate (see the run's report.html); "
                              "refusing to serve; pass --allow-failed-gate to serve it anyway")
    model, tokenizer = load_causal_lm(folder)
    return LMBundle(model, tokenizer, generation, manifest["serving"])
