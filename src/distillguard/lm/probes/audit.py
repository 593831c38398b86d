"""The LM track's audit: test perplexity, memorization probes and LM membership attacks.

Targets are the teacher and the student; a **reference model** (the student's
architecture trained with plain next-token loss on the same transfer blocks, never on
private text) gives every canary's exposure baseline (BPE length effects give a model
that never saw a canary several bits of rank exposure) and the ``reference`` attack's
denominator. An exchangeability check (a text classifier, cross-validated, on the
attacks' member/nonmember pool) warns when the two sets differ in kind, since the attack
AUCs would then measure that shift too. Nothing returned here holds a secret, a PII value
or a generated text: counts, rates and bits only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distillguard import progress
from distillguard.audit.exchangeability import text_exchangeability_check
from distillguard.audit.scores import ScoreRows, summarize_attack
from distillguard.config import Spec, starts_from_public
from distillguard.data.text import load_canaries, load_pii, load_text_groups, load_texts
from distillguard.lm.probes.memorization import TARGETS, exposure_probes, generation_probes, pii_probes
from distillguard.runs import RunDir, read_json
from distillguard.seeding import derive_seed


PUBLIC_REFERENCE = "public_reference"  # the reference attack with the private release's public model


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
    test = load_texts(data, "test", seed=seed)
    public = _public_model(run)
    metrics: dict[str, Any] = {"utility": lm_utility({**models_and_ref, **public}, tokenizer, test),
                               "warnings": [], "reference_model": {"what": _reference_what(spec, meta)}}
    counts = {c["canary_id"]: c["counted"] for c in (run.stage("teacher") or {}).get("canaries", [])}
    probes = exposure_probes(spec, models_and_ref, tokenizer, load_canaries(data, seed=seed), counts)
    probes += pii_probes(spec, models_and_ref, tokenizer, load_pii(data, seed=seed))
    with np.errstate(divide="ignore", invalid="ignore"):  # ratios of generations with nothing to score are NaN
        probes += generation_probes(spec, models, tokenizer, members, transfer, reference)
    metrics["probes"] = probes
    attacks, rows, n = membership_attacks(spec, models, tokenizer, members, nonmembers, reference,
                                          public=public.get("public_model"))
    metrics["attacks"] = attacks
    texts, ids, is_member = mia_pool(spec, members, nonmembers)
    metrics["exchangeability"], warning = text_exchangeability_check(texts, is_member, seed=seed,
                                                                     groups=pool_groups(spec, ids))
    if warning:
        metrics["warnings"].append(warning)
    metrics["populations"] = {"all": {"n_members": n, "n_nonmembers": n}}
    return metrics, rows


def _reference_what(spec: Spec, meta: dict) -> str:
    what = (f"the student's architecture trained on the transfer text only ({spec.audit.lm.reference_epochs} epochs; "
            "0 = untrained)")
    if meta.get("transfer_set", {}).get("source") == "synthetic":  # it must not learn what the generator learned
        what += ("; the public transfer role's guarded documents, not the DP synthetic text the student learned "
                 "from (that text depends on the members)")
    return what


def _reference_recipe(spec: Spec) -> tuple[float, int]:
    """(lr, batch size) of the reference model, which is trained from scratch.

    The student's recipe, unless the student is a fine-tune of the public model: its small
    learning rate (3e-4 by default) would leave a from-scratch reference at 690 test
    perplexity after one epoch on news-pii instead of 600, shifting every canary's baseline.
    The public model's own recipe (the teacher's) then stands in.
    """
    if starts_from_public(spec):
        return spec.teacher.lr, spec.teacher.batch_size
    return spec.student.lr, spec.student.batch_size


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
        lr, batch_size = _reference_recipe(spec)
        with progress.task("audit: reference model on transfer text", epochs) as advance:
            train_causal_lm(model, blocks, epochs=epochs, lr=lr, batch_size=batch_size,
                            seed=derive_seed(spec.run.seed, "reference", "train"), on_epoch=lambda e: advance(1))
    model.eval()
    return model


def _public_model(run: RunDir) -> dict:
    """Under private prediction, the release's public model (the student's start by default): its perplexity says
    how much of the student's utility the private labels added."""
    from distillguard.lm.models import load_causal_lm
    from distillguard.lm.private_prediction import PUBLIC_COPY_DIR

    folder = run / "softlabels" / PUBLIC_COPY_DIR
    return {"public_model": load_causal_lm(folder)[0].eval()} if folder.is_dir() else {}


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


def mia_pool(spec: Spec, members: list[str], nonmembers: list[str]) -> tuple[list[str], list[str], np.ndarray]:
    """(texts, example ids, is_member): equal-sized seeded samples of members and nonmembers."""
    n = min(spec.audit.lm.mia_texts, len(members), len(nonmembers))
    rng = np.random.default_rng(derive_seed(spec.run.seed, "lm-mia-pool"))
    m_idx, n_idx = np.sort(rng.choice(len(members), n, replace=False)), np.sort(rng.choice(len(nonmembers), n, replace=False))
    texts = [members[i] for i in m_idx] + [nonmembers[i] for i in n_idx]
    ids = [f"members:{i}" for i in m_idx] + [f"nonmembers:{i}" for i in n_idx]
    return texts, ids, np.r_[np.ones(n, bool), np.zeros(n, bool)]


def pool_groups(spec: Spec, ids: list[str]) -> list[str] | None:
    """The document group of each pool text (``role:index`` ids), or None when the data has none."""
    by_role = {role: load_text_groups(spec.data, role, seed=spec.run.seed) for role in ("members", "nonmembers")}
    if all(groups is None for groups in by_role.values()):
        return None
    out = []
    for text_id in ids:
        role, index = text_id.split(":")
        groups = by_role[role]
        out.append(f"{role}:{index}" if groups is None else groups[int(index)])
    return out


def membership_attacks(spec: Spec, models: dict, tokenizer, members: list[str], nonmembers: list[str],
                       reference, *, public=None) -> tuple[list[dict], ScoreRows, int]:
    """LM attacks on equal-sized samples of members and nonmembers, with the classifier audit's metrics.

    ``public``: under private prediction, the release's public model, the student's start. It
    is then also the sharpest reference: ``public_reference`` scores each text by how much
    the target's loss fell below the public model's, which is what the private labels (and
    only they) could have moved, where the ``reference`` model (one epoch on the transfer
    text) differs from the student in much else.
    """
    from distillguard.lm.models import context_length
    from distillguard.lm.probes import lm_membership_scores, text_logprobs

    cfg = spec.audit
    texts, ids, is_member = mia_pool(spec, members, nonmembers)
    n = len(texts) // 2
    extra = ({PUBLIC_REFERENCE: text_logprobs(public, tokenizer, texts, max_length=context_length(public)).rows()}
             if public is not None and "reference" in cfg.attacks else None)
    results, rows = [], ScoreRows()
    for target, model in models.items():
        with progress.task(f"audit: LM attacks ({target})", 1) as advance:
            scores = lm_membership_scores(model, tokenizer, texts, attacks=cfg.attacks, k=cfg.lm.min_k,
                                          reference_model=reference, max_length=context_length(model),
                                          extra_references=extra)
            advance(1)
        for name, values in scores.items():
            results.append(summarize_attack(values, is_member, spec=spec, target=target, attack=name, population="all"))
            rows.add(ids, target, name, values, is_member, canary=False)
    return results, rows, n
