"""Split-AI (SELENA): the exclusion draw, the answer for a member, hash routing, save/load."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from distillguard.config import TeacherConfig
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema, Split
from distillguard.models.artifact import load_classifier, save_classifier
from distillguard.models.split_ai import assign_exclusions, route, row_keys, training_rows
from distillguard.train.split_ai import train_split_ai


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


def _members(n: int = 120, d: int = 10, classes: int = 3):
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 2.0, (classes, d))
    y = rng.integers(0, classes, n)
    X = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    X[7] = X[3]  # an exact duplicate input: one record for the exclusion
    schema = Schema([f"f{i}" for i in range(d)], list(range(classes)), (d,))
    public = Standardizer.fit(rng.normal(0.0, 2.0, (200, d)).astype(np.float32))
    return Split(X=X, y=y.astype(np.int64), ids=np.arange(n)), schema, public


@pytest.fixture(scope="module")
def trained():
    members, schema, scaler = _members()
    cfg = TeacherConfig(hidden=[16], epochs=4, batch_size=16, lr=1e-2, split_ai={"k": 5, "l": 2})
    return members, train_split_ai(members, schema=schema, cfg=cfg, seed=3, scaler=scaler)


@pytest.mark.parametrize(("k", "l"), [(5, 2), (10, 3), (4, 3), (7, 1)])
def test_every_distinct_record_is_left_out_of_exactly_l_and_sizes_are_balanced(k, l):
    keys = row_keys(np.random.default_rng(1).normal(size=(203, 6)))
    table_keys, excluded = assign_exclusions(keys, k=k, l=l, seed=0)
    assert excluded.shape == (203, l)
    assert all(len(set(row)) == l for row in excluded) and excluded.min() >= 0 and excluded.max() < k
    rows = training_rows(keys, table_keys, excluded, k=k)
    assert max(map(len, rows)) - min(map(len, rows)) <= 1
    assert sum(map(len, rows)) == 203 * (k - l)  # each record trains k - l sub-teachers
    # seeded: the same draw again, a different one for another seed
    assert np.array_equal(excluded, assign_exclusions(keys, k=k, l=l, seed=0)[1])
    assert not np.array_equal(excluded, assign_exclusions(keys, k=k, l=l, seed=1)[1])


def test_exclusion_sets_are_spread_over_many_subsets():
    """A random draw, not a few fixed windows: most of the C(10, 3) = 120 subsets occur."""
    keys = row_keys(np.random.default_rng(2).normal(size=(2000, 4)))
    _, excluded = assign_exclusions(keys, k=10, l=3, seed=0)
    assert len({tuple(row) for row in excluded}) > 100


def test_member_answer_uses_no_sub_teacher_that_saw_it(trained):
    """SELENA's defining property: garbage in the sub-teachers that trained on i leaves i's answer bit-identical."""
    members, clf = trained
    split = clf.model
    before = clf.logits(members.X)
    scaled = clf.scaler.transform(members.X)
    keys = row_keys(scaled)
    table = split.table_keys.numpy().view(np.uint64)
    rows = training_rows(keys, table, split.excluded.numpy(), k=len(split.members))
    for t, seen in enumerate(rows):
        broken = copy.deepcopy(clf)
        with torch.no_grad():
            for p in broken.model.members[t].parameters():
                p.fill_(float("nan"))
        after = broken.logits(members.X)
        assert np.array_equal(after[seen], before[seen])  # bit for bit
        unseen = np.setdiff1d(np.arange(len(members)), seen)
        assert len(unseen) and np.isnan(after[unseen]).all()  # t does answer the records it never saw
    # the duplicated input is one record: its copies get one answer
    assert np.array_equal(before[3], before[7])


def test_non_member_inputs_are_routed_by_hash_to_exactly_l_sub_teachers(trained):
    members, clf = trained
    rng = np.random.default_rng(5)
    queries = rng.normal(0.0, 2.0, (500, members.X.shape[1])).astype(np.float32)
    use = clf.model.answering(torch.from_numpy(clf.scaler.transform(queries))).numpy()
    assert use.shape == (500, 2) and all(len(set(u)) == 2 for u in use)
    # deterministic: the same input gets the same sub-teachers and the same answer, in any batch
    first = clf.logits(queries)
    order = rng.permutation(500)
    assert np.array_equal(clf.logits(queries[order]), first[order])
    assert np.array_equal(clf.logits(queries[:1]), first[:1])
    # every pair of the C(5, 2) = 10 subsets is used, none much more than its share
    counts = {pair: int((use == pair).all(axis=1).sum()) for pair in itertools.combinations(range(5), 2)}
    assert min(counts.values()) >= 20 and max(counts.values()) <= 85  # 50 expected each
    # routing is the hash of the input and the salt, nothing else
    keys = row_keys(clf.scaler.transform(queries))
    assert np.array_equal(route(keys, k=5, l=2, salt=11), route(keys, k=5, l=2, salt=11))
    assert not np.array_equal(route(keys, k=5, l=2, salt=11), route(keys, k=5, l=2, salt=12))


def test_split_ai_answer_is_the_mean_probability_of_the_answering_sub_teachers(trained):
    members, clf = trained
    X = torch.from_numpy(clf.scaler.transform(members.X[:20]))
    with torch.no_grad():
        probs = torch.softmax(clf.model.member_logits(X).double(), -1).numpy()  # (K, n, C)
        use = clf.model.answering(X).numpy()
    expected = np.stack([probs[use[i], i].mean(0) for i in range(20)])
    assert np.allclose(np.exp(clf.logits(members.X[:20])), expected, atol=1e-6)


def test_split_ai_saves_and_loads_bit_for_bit(trained, tmp_path):
    members, clf = trained
    save_classifier(tmp_path, clf, extra={"role": "teacher"})
    loaded, config = load_classifier(tmp_path)
    assert config["architecture"]["kind"] == "split-ai"
    queries = np.concatenate([members.X, members.X + 0.5])
    assert np.array_equal(loaded.logits(queries), clf.logits(queries))
