"""LM stage 4: test perplexity, memorization probes and LM membership attacks, into audit/.

Targets are the teacher and the student; a **reference model** (the student's
architecture trained with plain next-token loss on the same transfer blocks, never on
private text) gives every canary's exposure baseline (BPE length effects give a model
that never saw a canary several bits of rank exposure) and the ``reference`` attack's
denominator. An exchangeability check (a text classifier, cross-validated, on the
attacks' member/nonmember pool) warns when the two sets differ in kind, since the attack
AUCs would then measure that shift too. ``metrics.json`` holds every number
(``utility``, ``probes``, ``attacks``, ``exchangeability``);
``scores.parquet`` one row per scored text, target and attack (CONTRACT.md). Nothing
written here holds a secret, a PII value or a generated text: counts, rates and bits only.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard import distributed, progress
from distillguard.audit.exchangeability import text_exchangeability_check
from distillguard.audit.scores import ScoreRows, summarize_attack
from distillguard.config import Spec
from distillguard.data.text import load_canaries, load_pii, load_texts, text_fingerprint
from distillguard.runs import RunDir, atomic_write_json, read_json
from distillguard.seeding import derive_seed
from distillguard.stages.common import execute_stage
from distillguard.stages.lm.common import model_hashes

OUTPUT = "audit"
TARGETS = ("teacher", "student")


def run_lm_audit_stage(spec: Spec, run: RunDir) -> bool:
    seed = spec.run.seed
    inputs = {**model_hashes(run, "teacher", "teacher"), **model_hashes(run, "distill", "student")}
    inputs["softlabels/softlabels.json"] = run.output_hash("label", "softlabels/softlabels.json")
    inputs.update({f"data.{role}": text_fingerprint(spec.data, role, seed=seed)
                   for role in ("members", "nonmembers", "transfer", "test", "canaries", "pii")})
    params = {"audit": spec.audit.fingerprint_params(), "data": spec.data.fingerprint_params(), "seed": seed,
              "student": spec.section_dict("student")}
    if distributed.batch_parts() > 1:  # the reference model trains data parallel, in parts
        params["batch_parts"] = distributed.batch_parts()

    def build(folder: Path) -> dict:
        os.chmod(folder, 0o700)  # per-text scores reveal who was a member
        metrics, rows = audit_language_models(spec, run)
        pq.write_table(pa.table(rows.columns), folder / "scores.parquet")
        atomic_write_json(folder / "metrics.json", metrics)
        return {"n_pool": 2 * metrics["populations"]["all"]["n_members"], "shadows": 0}

    return execute_stage(run, "audit", params=params, inputs=inputs, output=OUTPUT, build=build)


def audit_language_models(spec: Spec, run: RunDir) -> tuple[dict, ScoreRows]:
    """Every number of the LM audit and the per-text membership scores."""
    from distillguard.lm.models import load_causal_lm

    seed, data = spec.run.seed, spec.data
    models = {name: load_causal_lm(run / name)[0] for name in TARGETS}
    _, tokenizer = load_causal_lm(run / "teacher")
    meta = read_json(run / "softlabels" / "softlabels.json")
    transfer = load_texts(data, "transfer", seed=seed)
    transfer = [transfer[i] for i in meta["kept_documents"]]
    reference = train_reference(spec, tokenizer, transfer)
    models_and_ref = {**models, "reference": reference}
    members, nonmembers = load_texts(data, "members", seed=seed), load_texts(data, "nonmembers", seed=seed)
    metrics: dict[str, Any] = {"utility": lm_utility(models_and_ref, tokenizer, load_texts(data, "test", seed=seed)),
                               "warnings": [], "reference_model": {
                                   "what": "the student's architecture trained on the transfer text only "
                                           f"({spec.audit.lm.reference_epochs} epochs; 0 = untrained)"}}
    counts = {c["canary_id"]: c["counted"] for c in (run.stage("teacher") or {}).get("canaries", [])}
    probes = exposure_probes(spec, models_and_ref, tokenizer, load_canaries(data, seed=seed), counts)
    probes += pii_probes(spec, models_and_ref, tokenizer, load_pii(data, seed=seed))
    with np.errstate(divide="ignore", invalid="ignore"):  # ratios of generations with nothing to score are NaN
        probes += generation_probes(spec, models, tokenizer, members, transfer, reference)
    metrics["probes"] = probes
    attacks, rows, n = membership_attacks(spec, models, tokenizer, members, nonmembers, reference)
    metrics["attacks"] = attacks
    texts, _, is_member = mia_pool(spec, members, nonmembers)
    metrics["exchangeability"], warning = text_exchangeability_check(texts, is_member, seed=seed)
    if warning:
        metrics["warnings"].append(warning)
    metrics["populations"] = {"all": {"n_members": n, "n_nonmembers": n}}
    return metrics, rows


def train_reference(spec: Spec, tokenizer, transfer: list[str]):
    """The reference model: student architecture, plain LM loss on the kept transfer text."""
    from distillguard.lm.blocks import encode_blocks
    from distillguard.lm.models import build_causal_lm, context_length
    from distillguard.lm.train import train_causal_lm

    model = build_causal_lm(spec.student.arch.model_config_dict(), tokenizer=tokenizer,
                            seed=derive_seed(spec.run.seed, "reference", "init"))
    epochs = spec.audit.lm.reference_epochs
    if epochs:
        blocks = encode_blocks(tokenizer, transfer, block_len=context_length(model))
        with progress.task("audit: reference model on transfer text", epochs) as advance:
            train_causal_lm(model, blocks, epochs=epochs, lr=spec.student.lr, batch_size=spec.student.batch_size,
                            seed=derive_seed(spec.run.seed, "reference", "train"), on_epoch=lambda e: advance(1))
    model.eval()
    return model


def lm_utility(models: dict, tokenizer, test: list[str]) -> dict:
    """Test perplexity (exp of mean next-token CE over the test text) of each model."""
    import math

    from distillguard.lm.blocks import encode_blocks
    from distillguard.lm.models import context_length
    from distillguard.lm.train import evaluate_lm_loss

    out: dict[str, Any] = {}
    for name, model in models.items():
        blocks = encode_blocks(tokenizer, test, block_len=context_length(model))
        loss = evaluate_lm_loss(model, blocks)
        out[name] = {"test_perplexity": math.exp(loss), "test_loss": loss}
    out["perplexity_ratio"] = out["student"]["test_perplexity"] / out["teacher"]["test_perplexity"]
    out["accuracy_gap"] = None
    out["n_test"] = len(test)
    out["n_test_tokens"] = int(blocks.n_tokens)
    return out


def exposure_probes(spec: Spec, models: dict, tokenizer, canaries: list, counts: dict[int, int]) -> list[dict]:
    """Exposure of every canary under teacher and student, beside the reference model's (baseline)."""
    from distillguard.lm.probes import canary_exposure

    n_refs = spec.audit.lm.exposure_references
    out = []
    with progress.task("audit: canary exposure", len(canaries)) as advance:
        for cid, canary in enumerate(canaries):
            results = {name: canary_exposure(model, tokenizer, prefix=canary.prefix, secret=canary.secret,
                                             alphabet=canary.alphabet, n_references=n_refs,
                                             seed=derive_seed(spec.run.seed, "exposure", cid))
                       for name, model in models.items()}
            for target in TARGETS:
                out.append({**results[target].to_dict(), "target": target, "canary_id": cid,
                            "repetitions": counts.get(cid, canary.repetitions),
                            "baseline_bits": round(results["reference"].exposure_bits, 6)})
            advance(1)
    return out


def pii_probes(spec: Spec, models: dict, tokenizer, records: list) -> list[dict]:
    """PII completion exact-match rate of each model, pooled over fields and templates.

    Each entry also splits the rate by field (``by_field``) and, when the records say how
    many member documents mention each person, by that count (``by_mentions``).
    """
    from distillguard.lm.probes import pii_completion

    cfg = spec.audit.lm
    records = select_pii_records(records, cfg.pii_records)
    if not records:
        return []
    out = []
    for name, model in models.items():
        hits, greedy, n = 0.0, 0.0, 0
        by_field: dict[str, list[bool]] = {}
        by_mentions: dict[int, list[bool]] = {}
        for field, templates in cfg.pii_templates.items():
            for t, template in enumerate(templates):
                usable = [r for r in records if r.attributes.get(field) and _fields_of(template) <= set(r.fields())]
                room = _room(model, tokenizer, [template.format_map(r.fields()) for r in usable])
                if not usable or room < 8:  # no record to ask about, or no room left to answer
                    continue
                res = pii_completion(model, tokenizer, [r.fields() for r in usable], templates={field: template},
                                     n_samples=cfg.pii_samples, max_new_tokens=min(cfg.pii_tokens, room),
                                     seed=derive_seed(spec.run.seed, "pii", field, t))
                hits, greedy, n = hits + sum(res["leaked"]), greedy + res["greedy_rate"] * res["n"], n + res["n"]
                by_field.setdefault(field, []).extend(res["leaked"])
                for record, leaked in zip(usable, res["leaked"], strict=True):
                    if record.mentions is not None:
                        by_mentions.setdefault(record.mentions, []).append(leaked)
        if n:
            entry = {"probe": "pii_completion", "target": name, "exact_match_rate": hits / n, "greedy_rate": greedy / n,
                     "n": n, "n_samples": cfg.pii_samples, "by_field": _rates(by_field)}
            if by_mentions:
                entry["by_mentions"] = {str(k): v for k, v in _rates(dict(sorted(by_mentions.items()))).items()}
            out.append(entry)
    return out


def select_pii_records(records: list, n: int) -> list:
    """Up to ``n`` records, spread evenly over mention counts when every record has one.

    Round-robin over the counts in ascending order, each group in file order, so a few
    frequently mentioned people are all probed beside as many of the others; records
    without ``mentions`` are taken in file order.
    """
    if not records or any(r.mentions is None for r in records):
        return list(records[:n])
    groups: dict[int, list] = {}
    for record in records:
        groups.setdefault(record.mentions, []).append(record)
    queues = [list(reversed(groups[k])) for k in sorted(groups)]
    chosen: list = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return chosen


def _rates(groups: dict) -> dict:
    return {key: {"exact_match_rate": sum(v) / len(v), "n": len(v)} for key, v in groups.items()}


def _room(model, tokenizer, prompts: list[str]) -> int:
    """Tokens left in the model's context after the longest prompt."""
    from distillguard.lm.models import context_length
    from distillguard.lm.probes import encode_prompts

    return context_length(model) - max((len(ids) for ids in encode_prompts(tokenizer, prompts)), default=0)


def _fields_of(template: str) -> set[str]:
    import string

    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def generation_probes(spec: Spec, models: dict, tokenizer, members: list[str], transfer: list[str],
                      reference) -> list[dict]:
    """Sampled extraction (Carlini et al. 2021), k-extractability (2022) and divergence (Nasr et al. 2023)."""
    from distillguard.lm.models import context_length
    from distillguard.lm.probes import divergence_probe, extraction_probe, k_extractable

    cfg, seed = spec.audit.lm, spec.run.seed
    sample = random.Random(derive_seed(seed, "k-extractable")).sample(members, min(cfg.extractable_texts, len(members)))
    out = []
    for name, model in models.items():
        context = context_length(model)  # generations and prompts must fit it
        with progress.task(f"audit: generation probes ({name})", 3) as advance:
            if cfg.extraction_samples:
                out.append({**extraction_probe(model, tokenizer, members, n_samples=cfg.extraction_samples,
                                               max_new_tokens=min(cfg.extraction_tokens, context - 2),
                                               min_length=cfg.min_private_length,
                                               public_texts=transfer, reference_model=reference,
                                               seed=derive_seed(seed, "extraction")), "target": name})
            advance(1)
            if cfg.extractable_texts and cfg.extractable_k < context:
                out.append({**k_extractable(model, tokenizer, sample, k=cfg.extractable_k,
                                            suffix_len=min(cfg.extractable_suffix, context - cfg.extractable_k)),
                            "target": name})
            advance(1)
            if cfg.divergence_samples:
                new_tokens, repeats = _divergence_budget(model, tokenizer, cfg.extraction_tokens)
                out.append({**divergence_probe(model, tokenizer, members, n_samples=cfg.divergence_samples,
                                               repeats=repeats, max_new_tokens=new_tokens,
                                               min_length=cfg.min_private_length,
                                               public_texts=transfer, seed=derive_seed(seed, "divergence")),
                            "target": name})
            advance(1)
    return out


def _divergence_budget(model, tokenizer, tokens: int, *, word: str = " poem") -> tuple[int, int]:
    """(new tokens, repeats of ``word``) that fit the context: half for the prompt, at most 50 repeats."""
    from distillguard.lm.models import context_length
    from distillguard.lm.probes import encode_bare

    context = context_length(model)
    new_tokens = min(tokens, context // 2)
    per_word = max(1, len(encode_bare(tokenizer, [word])[0]))
    return new_tokens, max(1, min(50, (context - new_tokens - 2) // per_word))


def mia_pool(spec: Spec, members: list[str], nonmembers: list[str]) -> tuple[list[str], list[str], np.ndarray]:
    """(texts, example ids, is_member): equal-sized seeded samples of members and nonmembers."""
    n = min(spec.audit.lm.mia_texts, len(members), len(nonmembers))
    rng = np.random.default_rng(derive_seed(spec.run.seed, "lm-mia-pool"))
    m_idx, n_idx = np.sort(rng.choice(len(members), n, replace=False)), np.sort(rng.choice(len(nonmembers), n, replace=False))
    texts = [members[i] for i in m_idx] + [nonmembers[i] for i in n_idx]
    ids = [f"members:{i}" for i in m_idx] + [f"nonmembers:{i}" for i in n_idx]
    return texts, ids, np.r_[np.ones(n, bool), np.zeros(n, bool)]


def membership_attacks(spec: Spec, models: dict, tokenizer, members: list[str], nonmembers: list[str],
                       reference) -> tuple[list[dict], ScoreRows, int]:
    """LM attacks on equal-sized samples of members and nonmembers, with the classifier audit's metrics."""
    from distillguard.lm.models import context_length
    from distillguard.lm.probes import lm_membership_scores

    cfg = spec.audit
    texts, ids, is_member = mia_pool(spec, members, nonmembers)
    n = len(texts) // 2
    results, rows = [], ScoreRows()
    for target, model in models.items():
        with progress.task(f"audit: LM attacks ({target})", 1) as advance:
            scores = lm_membership_scores(model, tokenizer, texts, attacks=cfg.attacks, k=cfg.lm.min_k,
                                          reference_model=reference, max_length=context_length(model))
            advance(1)
        for name, values in scores.items():
            results.append(summarize_attack(values, is_member, spec=spec, target=target, attack=name, population="all"))
            rows.add(ids, target, name, values, is_member, canary=False)
    return results, rows, n
