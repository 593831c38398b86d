"""LM stage 2: the text leak guard, then the teacher's top-k log-probabilities on the transfer text.

The guard runs first: a transfer document that copies a member or nonmember document
(exactly, or lightly edited: MinHash LSH over character 5-grams, exact Jaccard check) would
be labeled with the teacher's memorized distribution and leak it to the student. Policy
``[data] leak_policy``: fail (exit 2, nothing labeled), drop, or warn; what was found goes
to the manifest and to ``softlabels.json``.

Then the kept documents are packed into blocks and labeled as a stream of Parquet shards
(:func:`distillguard.lm.softlabels.write_soft_labels`: memory is one batch's logits,
whatever the corpus length), at T = 1 with the leftover mass. The tokenizer (fitted on
public text and checked for secrets) is copied to ``softlabels/tokenizer`` so the distill
stage never opens teacher/; under private prediction so is the public model (trained on
the guarded transfer text only), which the student may start from.

With ``[transfer.synthetic]`` (``dp-lm``) the teacher labels documents sampled from a DP-SGD
generator of the members instead (:mod:`distillguard.stages.lm.synthetic`), kept as
``synthetic_texts.jsonl``; the transfer role is still guarded, since the audit's reference
model trains on its kept documents.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from distillguard import progress
from distillguard.config import Spec
from distillguard.data.text import load_texts, text_fingerprint
from distillguard.runs import RunDir
from distillguard.stages.common import execute_stage
from distillguard.stages.lm.common import folder_digest, model_hashes

OUTPUT = "softlabels"
TOKENIZER_DIR = "tokenizer"


def guard_transfer_text(spec: Spec, transfer: list[str]):
    """(kept transfer document indices, LeakReport) under ``[data] leak_policy``.

    Raises:
        DataLeakError: policy ``fail`` and a transfer document copies a private one.
    """
    from distillguard.data.leakguard import apply_policy
    from distillguard.data.leakguard_text import find_text_leaks

    seed = spec.run.seed
    private = {role: load_texts(spec.data, role, seed=seed) for role in ("members", "nonmembers")}
    report = find_text_leaks(transfer, private, jaccard_threshold=spec.data.text_leak_jaccard, seed=seed)
    source = str(spec.data.transfer) if spec.data.transfer is not None else f"builtin {spec.data.builtin} transfer text"
    keep = apply_policy(report, policy=spec.data.leak_policy, n_transfer=len(transfer), source=source)
    return keep, report


def guard_secret_contexts(spec: Spec, transfer: list[str], keep) -> tuple[list[int], dict]:
    """Transfer documents holding a canary's prefix, under ``[data] leak_policy``.

    After such a prefix the teacher's top-k labels spell out its memorized secret, and the
    student learns it without the secret ever being in the transfer text
    (:mod:`distillguard.lm.prefix_guard`; ``benchmarks/bench_lm_transfer_leak.py``
    measures the leak). ``fail`` raises, ``drop`` removes those documents, ``warn`` keeps
    them; the record names canary ids and document counts, never a prefix or secret.
    """
    from distillguard.data.text import load_canaries
    from distillguard.lm.prefix_guard import check_no_secret_contexts, find_secret_contexts

    keep = [int(i) for i in keep]
    canaries = load_canaries(spec.data, seed=spec.run.seed)
    if not canaries:
        return keep, {"checked": False, "reason": "no canaries file"}
    kept = [transfer[i] for i in keep]
    hits = find_secret_contexts(kept, canaries)
    flagged = sorted({keep[h.document] for h in hits})
    record = {"checked": True, "flagged_documents": len(flagged), "canary_ids": sorted({h.canary_id for h in hits}),
              "dropped": len(flagged) if spec.data.leak_policy == "drop" else 0}
    if not hits:
        return keep, record
    if spec.data.leak_policy == "fail":
        source = str(spec.data.transfer) if spec.data.transfer is not None else f"builtin {spec.data.builtin} transfer text"
        check_no_secret_contexts(kept, canaries, where=source)
    progress.log(f"[yellow]prefix guard ({spec.data.leak_policy}): {len(flagged)} transfer document(s) hold the "
                 f"prefixes of canaries {record['canary_ids']}[/yellow]")
    if spec.data.leak_policy == "drop":
        keep = [i for i in keep if i not in set(flagged)]
    return keep, record


def private_model_files(shards: int) -> list[str]:
    """The teacher folder's files the private release reads: the public model's and each shard teacher's."""
    from distillguard.lm.private_prediction import PUBLIC_DIR, SHARDS_DIR

    folders = [PUBLIC_DIR] + [f"{SHARDS_DIR}/shard-{i:03d}" for i in range(shards)]
    return [f"{folder}/{name}" for folder in folders for name in ("model.safetensors", "config.json")]


def _privacy(spec: Spec, labeller, plan) -> dict:
    """The stage record's ``privacy`` block under private prediction (report.json reads it); none otherwise."""
    if labeller is None:
        return {}
    from distillguard.stages.lm.private import privacy_record

    record = privacy_record(spec, labeller, plan)
    progress.log(f"private prediction: {record['queries']} queries, eps = {record['epsilon']:.3g} "
                 f"(delta = {record['delta']:.3g}), mean lambda = {record['mean_lambda']:.3g}")
    return {"privacy": record}


def _texts_to_label(spec: Spec, tokenizer, public: list[str], folder: Path) -> tuple[list[str], dict]:
    """(the documents the teacher labels, the stage's ``transfer_set`` entry): the guarded transfer documents, or
    with ``[transfer.synthetic]`` the DP synthetic ones (written to ``synthetic_texts.jsonl``)."""
    if spec.transfer.synthetic is None:
        return public, {}
    from distillguard.lm.data import write_jsonl_texts
    from distillguard.stages.lm.synthetic import SYNTHETIC_FILE, synthetic_transfer_text

    texts, record = synthetic_transfer_text(spec, tokenizer)
    write_jsonl_texts(folder / SYNTHETIC_FILE, texts)
    return texts, {"transfer_set": record}


def _fingerprint(spec: Spec, run: RunDir) -> tuple[dict, dict]:
    """(inputs, params) of the label stage.

    The guard compares the transfer text with the private text, so this stage reads
    members and nonmembers (the teacher's side of the wall); the distill stage does not.
    """
    seed = spec.run.seed
    inputs = {f"data.{role}": text_fingerprint(spec.data, role, seed=seed)
              for role in ("members", "nonmembers", "transfer", "canaries")}
    inputs.update(model_hashes(run, "teacher", "teacher"))
    params = {"data": spec.data.fingerprint_params(), "seed": seed, "temperature": 1.0, "top_k": spec.distill.top_k,
              "logprob_bits": spec.softlabels.logprob_bits}
    private, synthetic = spec.softlabels.private_prediction, spec.transfer.synthetic
    if synthetic is not None:  # the teacher labels DP synthetic text sampled from a generator of the members
        params["synthetic"] = synthetic.model_dump(mode="json")
        params["teacher_arch"] = spec.section_dict("teacher")  # the generator is built like the teacher
        if spec.teacher.path is not None:
            inputs["teacher.path"] = folder_digest(spec.teacher.path, what="[teacher].path")
    if private is not None:
        params["private_prediction"] = private.model_dump(mode="json")
        params["public_model"] = "copied"  # beside the labels, for a student that starts from it
        inputs.update({f"teacher/{rel}": run.output_hash("teacher", f"teacher/{rel}")
                       for rel in private_model_files(private.shards)})
    return inputs, params


def run_lm_label_stage(spec: Spec, run: RunDir) -> bool:
    seed, private = spec.run.seed, spec.softlabels.private_prediction
    inputs, params = _fingerprint(spec, run)

    def build(folder: Path) -> dict:
        from distillguard.lm.blocks import iter_token_blocks
        from distillguard.lm.models import context_length, load_causal_lm
        from distillguard.lm.softlabels import write_soft_labels
        from distillguard.lm.tokenizer import save_tokenizer

        transfer = load_texts(spec.data, "transfer", seed=seed)
        keep, leaks = guard_transfer_text(spec, transfer)
        if leaks.transfer_rows.size:
            progress.log(f"[yellow]leak guard ({spec.data.leak_policy}): {leaks.summary()}[/yellow]")
        keep, contexts = guard_secret_contexts(spec, transfer, keep)
        teacher, tokenizer = load_causal_lm(run / "teacher")
        kept, transfer_set = _texts_to_label(spec, tokenizer, [transfer[int(i)] for i in keep], folder)
        vocab = int(teacher.get_output_embeddings().weight.shape[0])
        k = min(spec.distill.top_k, vocab)
        blocks = iter_token_blocks(tokenizer, kept, block_len=context_length(teacher))
        labeller = plan = None
        if private is not None:  # the private release: counted before anything is answered
            from distillguard.stages.lm.private import private_labeller

            blocks = list(blocks)
            labeller, plan = private_labeller(spec, run / "teacher", blocks)
        facts = {"teacher_sha256": inputs["teacher/model.safetensors"], "transfer_sha256": inputs["data.transfer"],
                 "kept_documents": [int(i) for i in keep], "leak_policy": spec.data.leak_policy,
                 "leak_guard": leaks.to_dict(), "prefix_guard": contexts,
                 "release": "private-prediction" if private is not None else "teacher", **transfer_set}
        with progress.task("label: teacher top-k on transfer text", len(kept)) as advance:
            meta = write_soft_labels(teacher, blocks, folder=folder, k=k, logprob_bits=spec.softlabels.logprob_bits,
                                     extra_meta=facts, labeller=labeller)
            advance(len(kept))
        save_tokenizer(tokenizer, folder / TOKENIZER_DIR)
        if private is not None:  # trained on the guarded transfer text only: as public as the labels it gave
            from distillguard.lm.private_prediction import PUBLIC_COPY_DIR, PUBLIC_DIR

            shutil.copytree(run / "teacher" / PUBLIC_DIR, folder / PUBLIC_COPY_DIR)
        flagged = int(leaks.transfer_rows.size)
        return {"n_documents": len(kept), "n_blocks": meta["n_blocks"], "n_tokens": meta["n_tokens"], "k": k,
                "leak_guard": {"policy": spec.data.leak_policy, "method": leaks.method, "criterion": leaks.criterion,
                               "flagged": flagged, "n_exact": leaks.n_exact, "n_near": leaks.n_near,
                               "dropped": flagged if spec.data.leak_policy == "drop" else 0},
                "prefix_guard": contexts, **_privacy(spec, labeller, plan), **transfer_set}

    return execute_stage(run, "label", params=params, inputs=inputs, output=OUTPUT, build=build)

