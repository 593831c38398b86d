"""The LM label stage's side of ``[transfer.synthetic] mechanism = "dp-lm"``: DP synthetic transfer text.

The generator is built like the teacher (the ``[teacher] path`` model, else ``[teacher.arch]``
freshly initialized, with the run's tokenizer), trained with DP-SGD on the member
documents (:mod:`distillguard.lm.dp_generator`), and sampled into ``rows`` documents that
pass the text leak guard and the prefix guard (:mod:`distillguard.lm.synthetic_text`).
The teacher then labels those documents instead of the transfer role. The generator is
not kept: its record (ε, δ, σ, q, steps) is the label stage's ``transfer_set``.

The transfer role is still read, and is still public text: the tokenizer was fitted on it
(teacher stage), and the audit's reference model trains on its guarded documents, never
on the synthetic text (docs/defenses/synthetic-transfer.md, "Causal LMs").
"""

from __future__ import annotations

from typing import Any

from distillguard import distributed, progress
from distillguard.config import Spec
from distillguard.data.text import load_canaries, load_texts
from distillguard.errors import ConfigError
from distillguard.privacy.delta import default_delta
from distillguard.seeding import derive_seed

SYNTHETIC_FILE = "synthetic_texts.jsonl"


def build_generator(spec: Spec, tokenizer):
    """(a model built like the teacher, how it was built)."""
    from distillguard.lm.models import build_causal_lm, check_vocab_size, load_causal_lm

    if spec.teacher.path is not None:
        model, _ = load_causal_lm(spec.teacher.path)
        check_vocab_size(model, len(tokenizer), what="the run's tokenizer")
        return model, "the [teacher] path model, DP fine-tuned"
    model = build_causal_lm(spec.teacher.arch.model_config_dict(), tokenizer=tokenizer,
                            seed=derive_seed(spec.run.seed, "generator", "init"))
    return model, "[teacher.arch], freshly initialized"


def synthetic_transfer_text(spec: Spec, tokenizer) -> tuple[list[str], dict[str, Any]]:
    """The guarded DP synthetic documents the teacher labels, and the generator's record (the ``transfer_set``)."""
    from distillguard.lm.dp_generator import GeneratorSettings, document_examples, sample_documents, train_dp_generator
    from distillguard.lm.models import context_length
    from distillguard.lm.synthetic_text import guarded_synthetic_text

    if distributed.world().size > 1:
        raise ConfigError("[transfer.synthetic] dp-lm: the generator trains in one process (its accountant counts "
                          "every step); run the label stage without torchrun")
    cfg, seed = spec.transfer.synthetic, spec.run.seed
    members, nonmembers = load_texts(spec.data, "members", seed=seed), load_texts(spec.data, "nonmembers", seed=seed)
    delta = cfg.delta if cfg.delta is not None else default_delta(len(members))
    generator, built = build_generator(spec, tokenizer)
    examples = document_examples(tokenizer, members, context=context_length(generator))
    stream = derive_seed(seed, "synthetic-transfer")
    with progress.task(f"label: DP-SGD generator on member documents (ε = {cfg.epsilon:g})", cfg.epochs) as advance:
        record = train_dp_generator(generator, examples, GeneratorSettings.from_config(cfg, delta=delta), seed=stream,
                                    on_epoch=lambda e: advance(1))
    with progress.task("label: sampling DP synthetic transfer text", None):
        out = guarded_synthetic_text(
            lambda n, s: sample_documents(generator, tokenizer, n, max_tokens=cfg.max_tokens, seed=s), rows=cfg.rows,
            private={"members": members, "nonmembers": nonmembers}, canaries=load_canaries(spec.data, seed=seed),
            jaccard=spec.data.text_leak_jaccard, seed=stream)
    progress.log(f"DP synthetic transfer text: {cfg.rows} documents, generator eps = {record['epsilon']:.3g} "
                 f"(delta = {delta:.3g}, sigma = {record['noise_multiplier']:.3g}, {record['steps']} steps)")
    return out.texts, {"source": "synthetic", **record, **out.record, "generator": built,
                       "file": f"softlabels/{SYNTHETIC_FILE}"}
