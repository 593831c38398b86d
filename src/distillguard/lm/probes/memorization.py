"""The memorization probes of an LM audit, as the spec configures them, on every target model.

Canary exposure beside the reference model's baseline, PII completion (split by field and
by how often a person is mentioned), and the generation probes: sampled extraction,
k-extractability and divergence. Each runs the pure probes of this package
(:mod:`.exposure`, :mod:`.pii`, :mod:`.extraction`) with the ``[audit.lm]`` settings and
seeds derived from ``[run] seed``, and returns metrics.json entries: counts, rates and
bits only, never a secret, a PII value or a generated text.
"""

from __future__ import annotations

import random

from distillguard import progress
from distillguard.config import Spec
from distillguard.seeding import derive_seed

TARGETS = ("teacher", "student")


def exposure_probes(spec: Spec, models: dict, tokenizer, canaries: list, counts: dict[int, int]) -> list[dict]:
    """Exposure of every canary under teacher and student, beside the reference model's (baseline).

    Each canary is scored with its known suffix, among references of its token count
    (:func:`~distillguard.lm.probes.exposure.canary_exposure`), the same references under
    every model. ``baseline_bits`` is the reference model's exposure of that canary (it
    never saw one) and ``excess_bits`` the target's exposure above it, which the gate reads
    for the worst canary.
    """
    from distillguard.lm.probes import canary_exposure, draw_references

    n_refs = spec.audit.lm.exposure_references
    out = []
    with progress.task("audit: canary exposure", len(canaries)) as advance:
        for cid, canary in enumerate(canaries):
            refs = draw_references(tokenizer, prefix=canary.prefix, secret=canary.secret, suffix=canary.suffix,
                                   alphabet=canary.alphabet, n=n_refs, seed=derive_seed(spec.run.seed, "exposure", cid))
            results = {name: canary_exposure(model, tokenizer, prefix=canary.prefix, secret=canary.secret,
                                             suffix=canary.suffix, alphabet=canary.alphabet, references=refs)
                       for name, model in models.items()}
            baseline = results["reference"].exposure_bits
            for target in TARGETS:
                out.append({**results[target].to_dict(), "target": target, "canary_id": cid,
                            "repetitions": counts.get(cid, canary.repetitions),
                            "baseline_bits": round(baseline, 6),
                            "excess_bits": round(results[target].exposure_bits - baseline, 6)})
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
