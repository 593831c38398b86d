"""Stage 5: the deploy bundle (student only), and optionally the teacher's destruction."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from safetensors.numpy import load_file

from distillguard.config import Spec
from distillguard.config.deploy import AUDITED_CLASSIFIER_OUTPUT, finer_than
from distillguard.errors import ArtifactError, ConfigError
from distillguard.models.artifact import load_classifier, save_classifier
from distillguard.report.model_card import render_model_card
from distillguard.runs import RunDir, atomic_write_json, atomic_write_text, read_json, sha256_file
from distillguard.stages.common import execute_stage

OUTPUT = "deploy"
# Training checkpoints hold teacher and shadow weights until their stage completes.
SENSITIVE = ("teacher", "audit/scores.parquet", "audit/shadow_outputs.npz", "audit/record_risk.parquet", ".checkpoints",
             "softlabels/inputs.npy")  # the last: the members' inputs, under Split-AI self-distillation only


def tensor_digests(weights: Path) -> dict[str, str]:
    """sha256 of each tensor's raw bytes (dtype and shape included) in a safetensors file."""
    return {
        name: hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()
        for name, a in load_file(str(weights)).items()
    }


def assert_no_teacher_tensor(deploy_weights: Path, teacher_digests: dict[str, str]) -> None:
    """Refuse a bundle that holds any tensor equal to one of the teacher's."""
    shared = set(tensor_digests(deploy_weights).values()) & set(teacher_digests.values())
    if shared:
        raise ArtifactError(f"{deploy_weights}: {len(shared)} tensor(s) identical to the teacher's; refusing to export")


def teacher_tensor_digests(run: RunDir) -> dict[str, str]:
    """The teacher's tensor digests: from its (hash-checked) weights, or, once it was
    destroyed, from the digests the last export recorded."""
    teacher_weights = run / "teacher" / "model.safetensors"
    if teacher_weights.exists():
        run.output_hash("teacher", "teacher/model.safetensors")
        return tensor_digests(teacher_weights)
    return (run.stage("export") or {}).get("teacher_tensor_sha256", {})


def run_export_stage(spec: Spec, run: RunDir) -> bool:
    inputs = {rel: run.output_hash("distill", rel) for rel in ("student/model.safetensors", "student/config.json")}
    inputs["report.json"] = sha256_file(run / "report.json")
    teacher_digests = teacher_tensor_digests(run)
    params = {"run": spec.section_dict("run"), "deploy": spec.section_dict("deploy")}

    def build(folder: Path) -> dict:
        student, config = load_classifier(run / "student")
        release = release_policy(spec, n_classes=student.schema.n_classes)
        save_classifier(folder, student, extra={
            "role": "student", "distill": config.get("distill"), "release": release,
            "audited_output": AUDITED_CLASSIFIER_OUTPUT, "serving": spec.deploy.serving_limits()})
        assert_no_teacher_tensor(folder / "model.safetensors", teacher_digests)
        hf = _export_hf_text(student, folder, teacher_digests)
        report = read_json(run / "report.json")
        atomic_write_text(folder / "README.md", render_model_card(report, release=release))
        bundle = {"run": report["run"], "student_sha256": sha256_file(folder / "model.safetensors"),
                  "gate_passed": report["gate"]["passed"], "report_sha256": inputs["report.json"], **hf}
        if spec.deploy.onnx:
            from distillguard.models.onnx_export import export_onnx

            export_onnx(student, folder / "model.onnx")
            bundle["onnx_sha256"] = sha256_file(folder / "model.onnx")
        atomic_write_json(folder / "manifest.json", bundle)
        return {"teacher_tensor_sha256": teacher_digests, "checked_no_teacher_tensor": True}

    return execute_stage(run, "export", params=params, inputs=inputs, output=OUTPUT, build=build)


def _export_hf_text(student, folder: Path, teacher_digests: dict[str, str]) -> dict:
    """A text student also as a plain Hugging Face folder, ``deploy/hf/`` (model and tokenizer)."""
    from distillguard.data import is_text_schema

    if not is_text_schema(student.schema):
        return {}
    from distillguard.data.text_roles import schema_tokenizer
    from distillguard.models.text import save_hf_text_classifier

    save_hf_text_classifier(student.model, schema_tokenizer(student.schema), folder / "hf",
                            classes=student.schema.classes)
    assert_no_teacher_tensor(folder / "hf" / "model.safetensors", teacher_digests)
    return {"hf_folder": "hf", "hf_sha256": sha256_file(folder / "hf" / "model.safetensors"),
            "hf_max_length": student.schema.encoding["max_length"]}


def release_policy(spec: Spec, *, n_classes: int) -> dict:
    """The bundle's output form from ``[deploy]``: the audited form or a coarser one, never finer."""
    release = spec.deploy.release_policy()
    if release["top_k"] is not None and release["top_k"] >= n_classes:
        raise ConfigError(f"[deploy].top_k = {release['top_k']}: the model has {n_classes} classes; expected "
                          f"fewer (top_k = {n_classes} is the full distribution: use output = \"probabilities\")")
    why = finer_than(release, AUDITED_CLASSIFIER_OUTPUT)
    if why is not None:
        raise ConfigError(f"[deploy]: {why}; a bundle releases the audited form or a coarser one")
    return release


def destroy_teacher(run: RunDir) -> list[str]:
    """Overwrite with zeros, fsync and delete the teacher and everything that reveals membership.

    Best effort: on SSDs and copy-on-write file systems old blocks may survive the overwrite.
    """
    removed: list[str] = []
    for rel in SENSITIVE:
        target = run / rel
        files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file()) if target.exists() else []
        for path in files:
            size = path.stat().st_size
            with open(path, "r+b") as handle:
                handle.write(b"\0" * size)
                handle.flush()
                os.fsync(handle.fileno())
            path.unlink()
            removed.append(str(path.relative_to(run.root)))
        if target.is_dir():
            for sub in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
                sub.rmdir()
            target.rmdir()
    manifest = run.load_manifest()
    manifest["teacher_destroyed"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": removed,
                                     "note": "overwritten with zeros then deleted; best effort on SSD/CoW file systems"}
    run.save_manifest(manifest)
    return removed
