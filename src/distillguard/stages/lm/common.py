"""What the LM stages share: folder hashes for fingerprints, the tokenizer, the canaries check."""

from __future__ import annotations

from pathlib import Path

from distillguard.config import Spec
from distillguard.errors import ConfigError, DataError
from distillguard.runs import RunDir, sha256_file

MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json")


def folder_digest(folder: Path, *, what: str) -> str:
    """sha256 over the weights, config and tokenizer files of a user-given HF folder."""
    import hashlib

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: {what} is not a folder; expected a Hugging Face folder (config.json, "
                        "model.safetensors, tokenizer files)")
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in (".safetensors", ".json")):
            digest.update(path.name.encode() + sha256_file(path).encode())
    return digest.hexdigest()


def model_hashes(run: RunDir, stage: str, folder: str) -> dict[str, str]:
    """Recorded hashes of a model folder the run wrote (weights, config, tokenizer)."""
    return {f"{folder}/{name}": run.output_hash(stage, f"{folder}/{name}") for name in MODEL_FILES}


def fit_or_load_tokenizer(spec: Spec, transfer_texts: list[str]):
    """The run's tokenizer: ``[teacher.tokenizer] path``, else the ``[teacher] path`` folder's, else
    byte-level BPE fitted on the transfer text only (never on members: REFERENCES.md)."""
    from distillguard.lm.tokenizer import load_tokenizer, train_bpe_tokenizer

    cfg = spec.teacher.tokenizer
    if cfg.path is not None:
        return load_tokenizer(cfg.path), "loaded"
    if spec.teacher.path is not None:
        return load_tokenizer(spec.teacher.path), "loaded with the teacher"
    return train_bpe_tokenizer(transfer_texts, vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency), \
        "fitted on the transfer text"


def check_student_context(model, block_len: int, *, where: str) -> None:
    from distillguard.lm.models import context_length

    if context_length(model) < block_len:
        raise ConfigError(f"{where}: the student's context of {context_length(model)} tokens is shorter than the "
                          f"soft labels' blocks of {block_len}; set [student.arch].context >= [teacher.arch].context")
