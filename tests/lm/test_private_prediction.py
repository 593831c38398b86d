"""Private prediction's LM side: member shards, queried positions, the private labeller's release."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from distillguard.lm.private_prediction import PrivateLabeller, assign_shards, query_mask, shard_of
from distillguard.privacy.private_prediction import query_epsilon

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"kind": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 32}


def test_every_member_is_in_exactly_one_shard_and_no_other_document_moves_it():
    docs = [f"document {i} about customer {i * 7}" for i in range(400)]
    shards = assign_shards(docs, shards=5, seed=0)
    assert shards.shape == (400,) and set(shards.tolist()) == set(range(5))
    assert np.bincount(shards).min() > 50  # a hash spreads them
    with_one_more = assign_shards(docs + ["one added document"], shards=5, seed=0)
    assert np.array_equal(with_one_more[:400], shards)  # adding a member changes one shard only
    assert shard_of(docs[3], shards=5, seed=0) == shards[3]
    assert not np.array_equal(assign_shards(docs, shards=5, seed=1), shards)  # seeded


def test_query_mask_is_a_seeded_function_of_the_block_alone():
    block = list(range(1000))
    first = query_mask(block, fraction=0.25, seed=3)
    assert np.array_equal(first, query_mask(list(block), fraction=0.25, seed=3))
    assert 0.2 < first.mean() < 0.3
    assert query_mask(block, fraction=1.0, seed=3).all()


@pytest.fixture(scope="module")
def models(small_tokenizer):
    from distillguard.lm.models import build_causal_lm

    shards = [build_causal_lm(TINY, tokenizer=small_tokenizer, seed=s) for s in (1, 2, 3)]
    public = build_causal_lm(TINY, tokenizer=small_tokenizer, seed=0)
    for m in (*shards, public):
        torch.nn.init.normal_(m.lm_head.weight, std=0.5)  # peaked distributions, far from each other
        m.eval()
    return shards, public


def _released(labels, row: int, pos: int) -> torch.Tensor:
    """The stored distribution at one position as a dense vector over the top-k (the leftover aside)."""
    return labels["topk_logprobs"][row, pos].exp()


def test_the_release_is_public_except_for_one_sampled_token(models):
    shards, public = models
    blocks = [list(range(5, 29)), list(range(40, 60))]
    labeller = PrivateLabeller(shards, public, radius=0.05, sample_weight=0.5, query_fraction=1.0, seed=0)
    labels = labeller(blocks, k=16)
    assert labeller.queries == 24 + 20
    ids, mask = labels["ids"], labels["mask"]
    with torch.no_grad():
        p0 = torch.softmax(public(input_ids=ids, attention_mask=mask.long()).logits.double(), -1)
    for row, pos in ((0, 0), (0, 23), (1, 19)):
        top_ids = labels["topk_ids"][row, pos]
        stored = _released(labels, row, pos).double()
        expected = 0.5 * p0[row, pos, top_ids]
        extra = (stored - expected).abs()
        sampled = int(extra.argmax())
        assert extra[sampled] == pytest.approx(0.5, abs=1e-4)  # the one-hot of the sampled token
        assert torch.allclose(torch.cat([stored[:sampled], stored[sampled + 1:]]),
                              torch.cat([expected[:sampled], expected[sampled + 1:]]), atol=1e-5)
        total = stored.sum() + labels["leftover"][row, pos].double().exp()
        assert total == pytest.approx(1.0, abs=1e-5)
    assert 0 < labeller.lambda_sum / (labeller.queries * 3) < 0.2  # the ball at b = 0.05 keeps λ small
    assert 0 < labeller.dd_max <= query_epsilon(0.05, 3) + 1e-12


def test_unqueried_positions_get_the_public_model_and_cost_nothing(models):
    shards, public = models
    labeller = PrivateLabeller(shards, public, radius=0.05, sample_weight=0.5, query_fraction=1e-9, seed=0)
    labels = labeller([list(range(5, 29))], k=8)
    assert labeller.queries == 0 and labeller.dd_max == 0
    with torch.no_grad():
        logits = public(input_ids=labels["ids"], attention_mask=labels["mask"].long()).logits
    top = torch.log_softmax(logits.double(), -1).topk(8, -1)
    assert torch.equal(labels["topk_ids"], top.indices)
    assert torch.allclose(labels["topk_logprobs"].double(), top.values, atol=1e-5)


def test_the_sampled_distribution_moves_within_the_bound_when_one_shard_changes(models, small_tokenizer):
    """The ensemble's answer depends on a shard only through that shard's mollified term: swap one
    shard teacher for another model and P moves by at most eps_q (log-ratio, every token)."""
    from distillguard.lm.models import build_causal_lm

    shards, public = models
    stranger = build_causal_lm(TINY, tokenizer=small_tokenizer, seed=9)
    torch.nn.init.normal_(stranger.lm_head.weight, std=2.0)
    stranger.eval()
    ids = torch.arange(5, 29)[None]
    mask = torch.ones_like(ids, dtype=torch.bool)

    def mixture(models_):
        lab = PrivateLabeller(models_, public, radius=0.05, sample_weight=0.5, query_fraction=1.0, seed=0)
        with torch.no_grad():
            logp0 = torch.log_softmax(public(input_ids=ids).logits.double(), -1)
            terms = [lab._mollified(torch.log_softmax(m(input_ids=ids).logits.double(), -1), logp0, mask)
                     for m in models_]
        return torch.stack(terms)

    before, after = mixture(shards), mixture([shards[0], shards[1], stranger])
    assert torch.equal(before[:2], after[:2])  # the other shards' terms are untouched
    shift = (before.mean(0).log() - after.mean(0).log()).abs().max().item()
    assert 0 < shift <= query_epsilon(0.05, 3) + 1e-9
    assert shift <= math.log1p(math.expm1(0.1) / 3) + 1e-9


def test_a_shard_teacher_is_independent_of_the_members_its_shard_excludes(small_corpus, small_tokenizer, tmp_path):
    """Add one member: its shard's teacher changes, the public model and every other shard teacher are
    bit for bit the same (the ensemble's answer then moves only through that shard's term, bounded above)."""
    from distillguard.lm.models import build_causal_lm
    from distillguard.lm.private_prediction import train_private_ensemble

    members, extra = list(small_corpus.members[:24]), small_corpus.members[24]
    recipe = {"epochs": 1, "lr": 3e-3, "batch_size": 8, "weight_decay": 0.0}

    def weights(docs: list[str]) -> dict[str, dict[str, torch.Tensor]]:
        saved: dict[str, dict[str, torch.Tensor]] = {}

        def save(model, where) -> None:
            where.mkdir(parents=True)
            saved[where.name] = {k: v.clone() for k, v in model.state_dict().items()}

        train_private_ensemble(lambda: build_causal_lm(TINY, tokenizer=small_tokenizer, seed=0), small_tokenizer,
                               members=docs, public_texts=small_corpus.transfer[:20], shards=3, recipe=recipe,
                               seed=0, folder=tmp_path / str(len(docs)), save=save)
        return saved

    before, after = weights(members), weights(members + [extra])
    changed = f"shard-{shard_of(extra, shards=3, seed=0):03d}"
    assert set(before) == set(after) == {"public", "shard-000", "shard-001", "shard-002"}
    for name in before:
        same = all(torch.equal(before[name][k], after[name][k]) for k in before[name])
        assert same == (name != changed), name


def test_the_default_lm_release_refuses_torchrun_before_any_model_trains(monkeypatch, tmp_path):
    """Under torchrun the teacher stage of a default causal-LM spec stops at once, naming plain KD as the way out."""
    from distillguard import distributed
    from distillguard.config import parse_spec
    from distillguard.errors import ConfigError
    from distillguard.runs import RunDir
    from distillguard.stages.lm.teacher import run_lm_teacher_stage

    spec = parse_spec({"data": {"builtin": "pii-corpus"}}, base_dir=tmp_path)  # private prediction by default
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=0, size=2))
    with pytest.raises(ConfigError, match=r"run it without torchrun, or set private_prediction = false"):
        run_lm_teacher_stage(spec, RunDir(tmp_path / "run"))
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())  # nothing trained or written
