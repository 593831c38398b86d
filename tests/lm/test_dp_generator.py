"""The DP-SGD text generator: per-sample gradients per architecture, ε against Opacus' accountants, the guards."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from distillguard.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 32}


def _examples(tokenizer, texts, context=32):
    from distillguard.lm.dp_generator import document_examples

    return document_examples(tokenizer, texts, context=context)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_per_sample_gradients_equal_one_document_gradients(kind, small_corpus, small_tokenizer):
    """Opacus' hooks (and its functorch fallback for Conv1D / LlamaRMSNorm, the tied embedding's two uses)
    give each document the gradient it has alone, for every parameter."""
    from opacus.grad_sample import GradSampleModule

    from distillguard.lm.dp_generator import per_document_loss
    from distillguard.lm.models import build_causal_lm

    model = build_causal_lm({"kind": kind, **TINY}, tokenizer=small_tokenizer, seed=0)
    model.train()
    ex = _examples(small_tokenizer, ["short note", *small_corpus.members[:3]])  # one document shorter than 32 tokens
    assert ex.lengths.min() < 32 and ex.truncated == 3
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_document_loss(wrapped, ex.ids, ex.lengths).sum().backward()
    samples = {name: p.grad_sample.detach().clone() for name, p in model.named_parameters()}
    assert all(g.shape[0] == 4 for g in samples.values())  # every parameter, one gradient per document
    params = dict(model.named_parameters())
    for b in range(4):
        alone = torch.autograd.grad(per_document_loss(model, ex.ids[b:b + 1], ex.lengths[b:b + 1]).sum(),
                                    list(params.values()))
        for (name, _), grad in zip(params.items(), alone, strict=True):
            assert torch.allclose(samples[name][b], grad, atol=1e-6, rtol=1e-4), (kind, name, b)
    wrapped.to_standard_module()


def test_an_unsupported_architecture_is_refused_in_one_line(small_tokenizer):
    from transformers import OPTConfig, OPTForCausalLM

    from distillguard.lm.dp_generator import check_generator_supported

    model = OPTForCausalLM(OPTConfig(vocab_size=len(small_tokenizer), hidden_size=16, num_hidden_layers=1,
                                     ffn_dim=32, num_attention_heads=2, max_position_embeddings=32,
                                     word_embed_proj_dim=16))
    with pytest.raises(ConfigError) as error:
        check_generator_supported(model)
    message = str(error.value)
    assert "\n" not in message and "'opt'" in message and "['gpt2', 'llama']" in message


def test_epsilon_is_what_opacus_accountants_give_for_the_recorded_noise(small_corpus, small_tokenizer):
    from opacus.accountants import PRVAccountant, RDPAccountant

    from distillguard.lm.dp_generator import GeneratorSettings, train_dp_generator
    from distillguard.lm.models import build_causal_lm

    model = build_causal_lm({"kind": "gpt2", **TINY}, tokenizer=small_tokenizer, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ex = _examples(small_tokenizer, small_corpus.members)
    settings = GeneratorSettings(epsilon=6.0, delta=1e-4, epochs=2, batch_size=8, lr=3e-3, max_grad_norm=1.0,
                                 accountant="rdp")
    record = train_dp_generator(model, ex, settings, seed=3)
    per_epoch = math.ceil(len(ex) / 8)  # Opacus' Poisson rate is 1 / len(DataLoader)
    assert record["sample_rate"] == pytest.approx(1 / per_epoch) and record["steps"] == 2 * per_epoch
    assert record["fitted_on"] == len(small_corpus.members) and record["unit"] == "member document"
    independent = {}
    for name, accountant in (("rdp", RDPAccountant()), ("prv", PRVAccountant())):  # stepped as training steps
        for _ in range(record["steps"]):
            accountant.step(noise_multiplier=record["noise_multiplier"], sample_rate=record["sample_rate"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            independent[name] = accountant.get_epsilon(delta=1e-4)
    assert record["epsilon"] == pytest.approx(independent["rdp"], rel=1e-9)
    assert 0.95 * 6.0 <= record["epsilon"] <= 6.0  # σ calibrated to the target, never above it
    assert independent["prv"] < record["epsilon"]  # the tighter accountant: the recorded RDP ε is an upper bound
    assert 0.3 < record["noise_multiplier"] < 3
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # it trained
    assert not any(hasattr(p, "grad_sample") for p in model.parameters()) and not model._forward_hooks


def test_sampling_is_seeded_and_leaves_the_callers_rng_alone(small_tokenizer):
    from distillguard.lm.dp_generator import sample_documents
    from distillguard.lm.models import build_causal_lm

    model = build_causal_lm({"kind": "gpt2", **TINY}, tokenizer=small_tokenizer, seed=0)
    state = torch.get_rng_state()
    first = sample_documents(model, small_tokenizer, 5, max_tokens=12, seed=7, batch_size=2)
    assert torch.equal(state, torch.get_rng_state())
    assert first == sample_documents(model, small_tokenizer, 5, max_tokens=12, seed=7, batch_size=2)
    assert first != sample_documents(model, small_tokenizer, 5, max_tokens=12, seed=8, batch_size=2)
    assert len(first) == 5 and all(isinstance(t, str) for t in first)


def test_guards_drop_copies_and_canary_prefixes_and_draw_again(small_corpus):
    from distillguard.lm.synthetic_text import guarded_synthetic_text

    members, canary = small_corpus.members, small_corpus.canaries[0]
    clean = [f"a public note number {i} about the weather and the trains" for i in range(40)]
    rounds = []

    def draw(n, seed):  # round 1: two copies, one canary prefix and an empty document; then the shortfall, clean
        rounds.append((n, seed))
        if len(rounds) == 1:
            return [members[0], members[1] + " ", f"hello {canary.prefix}", "  ", *clean[: n - 4]]
        return clean[20: 20 + n]

    out = guarded_synthetic_text(draw, rows=10, private={"members": members, "nonmembers": small_corpus.nonmembers},
                                 canaries=small_corpus.canaries, jaccard=0.7, seed=0)
    assert len(out.texts) == 10 and [n for n, _ in rounds] == [10, 4] and rounds[0][1] != rounds[1][1]
    r = out.record
    assert (r["drawn"], r["dropped_empty"], r["dropped_copies"], r["dropped_exact"], r["dropped_prefix"]) == (14, 1, 2, 2, 1)
    assert not set(out.texts) & set(members) and not any(canary.prefix in t for t in out.texts)
    with pytest.raises(DataError, match=r"only 0 of rows = 3 synthetic documents passed the guards"):
        guarded_synthetic_text(lambda n, seed: members[:n], rows=3, private={"members": members}, canaries=[],
                               jaccard=0.7, seed=0)


def test_the_label_stages_generator_reads_the_member_documents_only(tmp_path, monkeypatch):
    """Built from the spec like the teacher: it trains on every member document and on nothing else (no
    nonmember, test or transfer text), and what it returns passes the leak and prefix guards."""
    from pathlib import Path

    import distillguard.lm.dp_generator as dp_generator
    from distillguard.config import parse_spec
    from distillguard.data.leakguard_text import find_text_leaks
    from distillguard.data.text import load_canaries, load_texts
    from distillguard.lm.prefix_guard import find_secret_contexts
    from distillguard.lm.tokenizer import train_bpe_tokenizer
    from distillguard.stages.lm.synthetic import synthetic_transfer_text

    spec = parse_spec({"data": {"builtin": "pii-corpus", "pii_corpus": {
        "member_bytes": 6000, "nonmember_bytes": 3000, "test_bytes": 2000, "transfer_bytes": 6000,
        "canaries_per_count": 1, "pii_mentions": [4], "pii_people_per_count": 1}},
        "teacher": {"arch": {"layers": 1, "width": 32, "heads": 2, "context": 32}},
        "transfer": {"synthetic": {"epsilon": 4.0, "rows": 12, "epochs": 1, "batch_size": 8,
                                   "accountant": "rdp"}}}, base_dir=Path(tmp_path))
    texts = {role: load_texts(spec.data, role, seed=spec.run.seed) for role in ("members", "nonmembers", "test", "transfer")}
    seen: list[list[str]] = []
    real = dp_generator.document_examples
    monkeypatch.setattr(dp_generator, "document_examples", lambda tok, t, **kw: seen.append(list(t)) or real(tok, t, **kw))
    monkeypatch.setattr(dp_generator, "noise_multiplier_for_epsilon", lambda **kw: 1.0)  # calibration: tested above
    tokenizer = train_bpe_tokenizer(texts["transfer"], vocab_size=300)
    synthetic, record = synthetic_transfer_text(spec, tokenizer)
    assert seen == [texts["members"]]
    assert not set(seen[0]) & (set(texts["nonmembers"]) | set(texts["test"]) | set(texts["transfer"]))
    assert record["fitted_on"] == len(texts["members"]) and record["source"] == "synthetic"
    assert record["mechanism"] == "dp-lm" and record["noise_multiplier"] == 1.0 and len(synthetic) == 12
    assert 0 < record["epsilon"] < math.inf
    private = {"members": texts["members"], "nonmembers": texts["nonmembers"]}
    assert find_text_leaks(synthetic, private, jaccard_threshold=spec.data.text_leak_jaccard).transfer_rows.size == 0
    assert find_secret_contexts(synthetic, load_canaries(spec.data, seed=spec.run.seed)) == []
