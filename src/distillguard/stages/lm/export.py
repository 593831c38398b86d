"""LM stage 5: deploy/ as a Hugging Face folder holding the student only.

Its manifest.json records the decoding `distillguard serve` may answer with (``generation``,
from ``[deploy]``), the decodings the audit's probes covered (``audited_generation``) and
the server's limits.

Plain ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` load it.
Before the folder is published, two checks refuse the export: no tensor equals one of
the teacher's, and no file contains a canary secret or a PII value of the canaries/PII
files (the model card carries aggregate numbers only).
"""

from __future__ import annotations

from pathlib import Path

from distillguard.config import Spec
from distillguard.config.deploy import audited_generation, generation_policy
from distillguard.data.text import load_canaries, load_pii
from distillguard.errors import ArtifactError
from distillguard.report.model_card import render_lm_model_card
from distillguard.runs import RunDir, atomic_write_json, atomic_write_text, read_json, sha256_file
from distillguard.stages.common import execute_stage
from distillguard.stages.export import assert_no_teacher_tensor, teacher_tensor_digests
from distillguard.stages.lm.common import model_hashes

OUTPUT = "deploy"


def assert_no_private_strings(folder: Path, needles: list[str]) -> None:
    """Refuse a folder any of whose files contains one of ``needles`` (secrets, PII values).

    The message names the file and how many values matched, never the values.
    """
    encoded = [n.encode("utf-8") for n in needles if n]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found = sum(1 for n in encoded if n in data)
        if found:
            raise ArtifactError(f"{path}: contains {found} secret or PII value(s) of the canaries/PII files; "
                                "refusing to export")


def private_values(spec: Spec) -> list[str]:
    """Every canary secret and PII value (names included) the run knows of."""
    seed = spec.run.seed
    values = [c.secret for c in load_canaries(spec.data, seed=seed)]
    for record in load_pii(spec.data, seed=seed):
        values += [record.name, *record.attributes.values()]
    return values


def run_lm_export_stage(spec: Spec, run: RunDir) -> bool:
    inputs = model_hashes(run, "distill", "student")
    inputs["report.json"] = sha256_file(run / "report.json")
    teacher_digests = teacher_tensor_digests(run)
    params = {"run": spec.section_dict("run"), "deploy": spec.section_dict("deploy")}
    audited = audited_generation(spec.audit.lm)
    generation = generation_policy(spec.deploy, audited)  # the spec check already refused an uncovered one

    def build(folder: Path) -> dict:
        from distillguard.lm.models import load_causal_lm, save_causal_lm

        student, tokenizer = load_causal_lm(run / "student")
        save_causal_lm(student, tokenizer, folder)
        assert_no_teacher_tensor(folder / "model.safetensors", teacher_digests)
        report = read_json(run / "report.json")
        atomic_write_text(folder / "README.md", render_lm_model_card(report))
        atomic_write_json(folder / "manifest.json", {
            "run": report["run"], "student_sha256": sha256_file(folder / "model.safetensors"),
            "gate_passed": report["gate"]["passed"], "report_sha256": inputs["report.json"],
            "generation": generation, "audited_generation": audited, "serving": spec.deploy.serving_limits()})
        assert_no_private_strings(folder, private_values(spec))
        return {"teacher_tensor_sha256": teacher_digests, "checked_no_teacher_tensor": True,
                "checked_no_private_strings": True}

    return execute_stage(run, "export", params=params, inputs=inputs, output=OUTPUT, build=build)
