"""LM stage 1: the tokenizer (public text only) and the teacher, fine-tuned on the members.

Writes teacher/ as a Hugging Face folder (owner-only: it memorizes the members) with
``split.json`` and ``training_log.json``. Before any training, every canary must occur in
the members text (counted) and no canary secret may be a vocabulary token.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from distillguard import distributed, progress
from distillguard.config import Spec
from distillguard.data.text import load_canaries, load_texts, text_fingerprint
from distillguard.runs import RunDir, atomic_write_json
from distillguard.seeding import derive_seed
from distillguard.stages.common import checkpoint_store, execute_stage
from distillguard.stages.lm.common import fit_or_load_tokenizer, folder_digest

OUTPUT = "teacher"


def run_lm_teacher_stage(spec: Spec, run: RunDir) -> bool:
    seed = spec.run.seed
    inputs = _inputs(spec)
    params = {"teacher": spec.section_dict("teacher"), "data": spec.data.fingerprint_params(), "seed": seed}
    private = spec.softlabels.private_prediction
    if private is not None:  # shard teachers, and a public model that reads the guards' verdicts (ε: label stage's)
        from distillguard.stages.lm.private import check_one_process

        check_one_process()
        params["private_prediction"] = {"shards": private.shards}
        inputs["data.nonmembers"] = text_fingerprint(spec.data, "nonmembers", seed=seed)
    if distributed.batch_parts() > 1:  # gradients in parts round differently from one piece
        params["batch_parts"] = distributed.batch_parts()
    checkpoints = checkpoint_store(spec, run, "teacher")

    def build(folder: Path) -> dict:
        from distillguard.lm.blocks import encode_blocks
        from distillguard.lm.data import check_canaries_planted
        from distillguard.lm.models import build_causal_lm, check_vocab_size, context_length, load_causal_lm, save_causal_lm
        from distillguard.lm.tokenizer import check_secrets_not_in_vocab
        from distillguard.lm.train import train_causal_lm

        os.chmod(folder, 0o700)  # quarantined: the teacher memorizes the members
        members, canaries = load_texts(spec.data, "members", seed=seed), load_canaries(spec.data, seed=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            counts = check_canaries_planted(canaries, members)
        for w in caught:
            progress.log(f"[yellow]{w.message}[/yellow]")
        tokenizer, tokenizer_source = fit_or_load_tokenizer(spec, load_texts(spec.data, "transfer", seed=seed))
        check_secrets_not_in_vocab(tokenizer, canaries)
        if spec.teacher.path is not None:
            model, _ = load_causal_lm(spec.teacher.path)
            check_vocab_size(model, len(tokenizer), what="the teacher's tokenizer")
            source = "loaded and fine-tuned" if spec.teacher.epochs else "loaded"
        else:
            model = build_causal_lm(spec.teacher.arch.model_config_dict(), tokenizer=tokenizer,
                                    seed=derive_seed(seed, "teacher", "init"))
            source = "trained"
        blocks = encode_blocks(tokenizer, members, block_len=context_length(model))
        with progress.task("teacher: causal LM on members", spec.teacher.epochs) as advance:
            log = train_causal_lm(model, blocks, epochs=spec.teacher.epochs, lr=spec.teacher.lr,
                                  batch_size=spec.teacher.batch_size, weight_decay=spec.teacher.weight_decay,
                                  seed=derive_seed(seed, "teacher", "train"), on_epoch=lambda e: advance(1),
                                  checkpoint=checkpoints.slot("teacher"))
        save_causal_lm(model, tokenizer, folder)
        atomic_write_json(folder / "split.json", {
            "train_ids": list(range(len(members))), "val_ids": [],
            "note": "document indices of the members file; every member was trained on"})
        atomic_write_json(folder / "training_log.json", log)
        ensemble = None if private is None else _private_ensemble(spec, folder, tokenizer, members)
        return {"source": source, "n_train": len(members), "n_val": 0, "n_tokens": blocks.n_tokens,
                "tokenizer": {"source": tokenizer_source, "vocab_size": len(tokenizer),
                              "checked_no_secret_in_vocab": True},
                "canaries": [{"canary_id": c.canary_id, "declared": c.declared, "counted": c.counted} for c in counts],
                "privacy": None, **({"private_prediction": ensemble} if ensemble is not None else {})}

    return execute_stage(run, "teacher", params=params, inputs=inputs, output=OUTPUT, build=build,
                         checkpoints=checkpoints)


def _private_ensemble(spec: Spec, folder: Path, tokenizer, members: list[str]) -> dict:
    """``[softlabels] private_prediction``: the public model, on the transfer documents the guards keep, and
    the shard teachers, into ``folder`` (:mod:`distillguard.stages.lm.private`)."""
    from distillguard.stages.lm.label import guard_secret_contexts, guard_transfer_text
    from distillguard.stages.lm.private import train_teacher_ensemble

    transfer = load_texts(spec.data, "transfer", seed=spec.run.seed)
    keep, _ = guard_transfer_text(spec, transfer)
    keep, _ = guard_secret_contexts(spec, transfer, keep)
    return train_teacher_ensemble(spec, folder, tokenizer, members, [transfer[i] for i in keep])


def _inputs(spec: Spec) -> dict[str, str]:
    """The data and user-given folders the teacher stage reads, by hash."""
    seed = spec.run.seed
    inputs = {f"data.{role}": text_fingerprint(spec.data, role, seed=seed) for role in ("members", "transfer", "canaries")}
    if spec.teacher.path is not None:
        inputs["teacher.path"] = folder_digest(spec.teacher.path, what="[teacher].path")
    if spec.teacher.tokenizer.path is not None:
        inputs["tokenizer.path"] = folder_digest(spec.teacher.tokenizer.path, what="[teacher.tokenizer].path")
    return inputs
