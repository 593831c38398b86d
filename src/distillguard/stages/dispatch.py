"""Which stage functions a spec runs: the classifier track's, or the causal-LM track's."""

from __future__ import annotations

from collections.abc import Callable

from distillguard import distributed
from distillguard.config import Spec
from distillguard.runs import RunDir

STAGES = ("teacher", "label", "distill", "audit", "export")


def stage_function(spec: Spec, name: str) -> Callable[[Spec, RunDir], bool]:
    """The entry function of stage ``name`` for this spec's model kind."""
    if spec.is_lm:
        from transformers.utils import logging as hf_logging

        from distillguard.stages.lm import audit, distill, export, label, teacher

        hf_logging.disable_progress_bar()  # our own bars report the stages; HF's would interleave with them

        table = {"teacher": teacher.run_lm_teacher_stage, "label": label.run_lm_label_stage,
                 "distill": distill.run_lm_distill_stage, "audit": audit.run_lm_audit_stage,
                 "export": export.run_lm_export_stage}
    else:
        from distillguard.stages import audit, distill, export, label, teacher

        table = {"teacher": teacher.run_teacher_stage, "label": label.run_label_stage,
                 "distill": distill.run_distill_stage, "audit": audit.run_audit_stage,
                 "export": export.run_export_stage}
    return table[name]


def run_stage(spec: Spec, run: RunDir, name: str) -> bool:
    """Run one stage (skipped when fresh); True when it ran."""
    with distributed.splitting_batches(spec.run.batch_split):
        return stage_function(spec, name)(spec, run)
