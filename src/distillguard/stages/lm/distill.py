"""LM stage 3: the student, trained from softlabels/ only.

Reads the soft-label shards (which carry the transfer blocks' token ids) and the
tokenizer copied beside them; never teacher/, never a private file. The temperature is
applied at load time by the loss (re-tempering truncated top-k is an approximation:
docs/tracks/language-models.md). With ``[distill] hard_tokens = "digits"`` (the default), the
positions whose next transfer token holds a digit train on that token instead of the
teacher's labels: the teacher's digits are where its memorized numbers live. A student
started from ``[student] path`` must share the teacher's tokenizer. Under private prediction the
student starts by default from the release's public model, copied beside the labels
(``[student] start``).
"""

from __future__ import annotations

from pathlib import Path

from distillguard import distributed, progress
from distillguard.config import Spec, starts_from_public
from distillguard.errors import ArtifactError
from distillguard.runs import RunDir, atomic_write_json
from distillguard.seeding import derive_seed
from distillguard.stages.common import checkpoint_store, execute_stage
from distillguard.stages.lm.common import check_student_context, folder_digest
from distillguard.stages.lm.label import TOKENIZER_DIR

OUTPUT = "student"


def run_lm_distill_stage(spec: Spec, run: RunDir) -> bool:
    label_outputs = (run.stage("label") or {}).get("outputs", {})
    if not label_outputs:
        raise ArtifactError(f"{run / 'softlabels'}: no soft labels recorded in {run.manifest_path}; run the label stage first")
    inputs = {rel: run.output_hash("label", rel) for rel in sorted(label_outputs)}
    if spec.student.path is not None:
        inputs["student.path"] = folder_digest(spec.student.path, what="[student].path")
    params = {"student": spec.section_dict("student"), "distill": spec.section_dict("distill"), "seed": spec.run.seed}
    if distributed.batch_parts() > 1:  # gradients in parts round differently from one piece
        params["batch_parts"] = distributed.batch_parts()

    checkpoints = checkpoint_store(spec, run, "distill")

    def build(folder: Path) -> dict:
        from distillguard.lm.models import build_causal_lm, check_same_tokenizer, load_causal_lm, save_causal_lm
        from distillguard.lm.softlabel_reader import SoftLabelReader
        from distillguard.lm.tokenizer import digit_token_mask, load_tokenizer
        from distillguard.lm.train import distill_causal_lm

        reader = SoftLabelReader(run / "softlabels")
        tokenizer = load_tokenizer(run / "softlabels" / TOKENIZER_DIR)
        if spec.student.path is not None:
            student, student_tokenizer = load_causal_lm(spec.student.path)
            check_same_tokenizer(tokenizer, student_tokenizer)
        elif starts_from_public(spec):
            from distillguard.lm.private_prediction import PUBLIC_COPY_DIR

            student = load_causal_lm(run / "softlabels" / PUBLIC_COPY_DIR)[0]
        else:
            student = build_causal_lm(spec.student.arch.model_config_dict(), tokenizer=tokenizer,
                                      seed=derive_seed(spec.run.seed, "student", "init"))
        check_student_context(student, int(reader.meta["block_len"]), where="[student]")
        d = spec.distill
        hard_vocab = digit_token_mask(tokenizer) if d.hard_tokens == "digits" else None
        with progress.task("distill: student on top-k soft labels", spec.student.epochs) as advance:
            log = distill_causal_lm(student, reader, loss=d.lm_loss(), beta=d.beta, temperature=d.temperature,
                                    epochs=spec.student.epochs, lr=spec.student.lr, batch_size=spec.student.batch_size,
                                    weight_decay=spec.student.weight_decay, hard_vocab=hard_vocab,
                                    seed=derive_seed(spec.run.seed, "student", "train"), on_epoch=lambda e: advance(1),
                                    checkpoint=checkpoints.slot("student"))
        save_causal_lm(student, tokenizer, folder)
        atomic_write_json(folder / "training_log.json", log)
        return {"n_blocks": len(reader), "k": reader.k, "start": _start(spec), "loss": d.lm_loss(),
                "temperature": d.temperature, "hard_tokens": {"tokens": d.hard_tokens,
                                "vocabulary": 0 if hard_vocab is None else int(hard_vocab.sum())}}

    return execute_stage(run, "distill", params=params, inputs=inputs, output=OUTPUT, build=build,
                         checkpoints=checkpoints)


def _start(spec: Spec) -> str:
    """Where the student's weights started, for the stage record."""
    if spec.student.path is not None:
        return "path"
    return "public model" if starts_from_public(spec) else "scratch"
