"""Checks of a language-model run's inputs before any stage writes anything.

Every role must parse (a bad JSONL line fails here, naming file and line), every canary
must occur in the members, the transfer text must pass the leak guard under ``fail``, and
a user-given student must share the user-given teacher's tokenizer.
"""

from __future__ import annotations

import warnings

from distillguard.config import ROLES, Spec
from distillguard.data.text import load_canaries, load_pii, load_texts


def check_text_data(spec: Spec) -> None:
    """Raise the first user error in the text data or model folders (DataError, DataLeakError, ConfigError)."""
    from distillguard.lm.data import check_canaries_planted
    from distillguard.stages.lm.label import guard_transfer_text

    seed = spec.run.seed
    texts = {role: load_texts(spec.data, role, seed=seed) for role in ROLES}
    load_pii(spec.data, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # counts that differ are reported by the teacher stage
        check_canaries_planted(load_canaries(spec.data, seed=seed), texts["members"])
    guard_transfer_text(spec, texts["transfer"])
    check_given_tokenizers(spec)


def check_given_tokenizers(spec: Spec) -> None:
    """A ``[student] path`` must use the teacher's tokenizer, when that one is a folder too."""
    from distillguard.lm.models import check_same_tokenizer
    from distillguard.lm.tokenizer import load_tokenizer

    if spec.student.path is None:
        return
    teacher_folder = spec.teacher.tokenizer.path or spec.teacher.path
    if teacher_folder is not None:
        check_same_tokenizer(load_tokenizer(teacher_folder), load_tokenizer(spec.student.path))
