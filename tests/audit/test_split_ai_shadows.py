"""The audit's shadows replay Split-AI: each shadow its own k sub-teachers, exclusions over its own set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillguard.audit.pipelines import ShadowJob, train_teachers
from distillguard.audit.shadows import AuditPool, _shadow_training_set, paired_membership, plant_canaries
from distillguard.audit.split_ai_shadows import train_shadow_split_ai
from distillguard.config import parse_spec
from distillguard.data.preprocessing import Standardizer
from distillguard.data.types import Schema
from distillguard.errors import ConfigError
from distillguard.models.split_ai import row_keys


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


def _setup():
    rng = np.random.default_rng(0)
    n, d = 60, 8
    y = rng.integers(0, 3, n)
    X = (rng.normal(0.0, 2.0, (3, d))[y] + rng.normal(size=(n, d))).astype(np.float32)
    pool = AuditPool(X, y, np.r_[np.ones(30, bool), np.zeros(30, bool)], [f"r{i}" for i in range(n)])
    membership = paired_membership(n, 4, seed=0)
    canaries = plant_canaries(X, n_classes=3, count=4, duplicates=3, n_shadows=4, seed=0)
    spec = parse_spec({"teacher": {"hidden": [8], "epochs": 2, "split_ai": {"k": 3, "l": 1}},
                       "audit": {"shadows": 4, "canaries": 4, "bootstrap": 0}}, base_dir=Path("/tmp"))
    schema = Schema([f"f{i}" for i in range(d)], [0, 1, 2], (d,))
    transfer = rng.normal(0.0, 2.0, (40, d)).astype(np.float32)
    return pool, membership, canaries, spec, schema, transfer


def test_each_shadow_trains_k_sub_teachers_with_exclusions_from_its_own_members():
    pool, membership, canaries, spec, schema, transfer = _setup()
    eval_sets = {"pool": pool.X, "canaries": canaries.X}
    out, plans = train_shadow_split_ai(pool, canaries, membership, spec=spec, schema=schema, transfer_X=transfer,
                                       eval_sets=eval_sets, shadow_ids=[1, 2])
    assert out["pool"].shape == (2, 60, 3) and out["canaries"].shape == (2, 4, 3)
    scaler = Standardizer.fit(transfer)
    for plan, s in zip(plans, [1, 2]):
        X, _, _, _ = _shadow_training_set(s, pool, canaries, membership, val_fraction=0.0, seed=spec.run.seed)
        own = row_keys(scaler.transform(X))
        assert len(plan.rows) == 3  # k sub-teachers
        assert set(plan.table_keys.tolist()) == set(own.tolist())  # the table is this shadow's set, nothing else
        outside = row_keys(scaler.transform(pool.X[~membership[s]]))
        assert not set(outside.tolist()) & set(plan.table_keys.tolist())
        assert plan.excluded.shape == (len(plan.table_keys), 1)
        for t, rows in enumerate(plan.rows):  # sub-teacher t trains on the shadow's records not left out of it
            left_out = set(plan.table_keys[plan.excluded[:, 0] == t].tolist())
            assert set(own[rows].tolist()) == set(own.tolist()) - left_out
    # shadows 1 and 2 draw their own exclusions (different members, different seeds)
    assert not np.array_equal(plans[0].table_keys, plans[1].table_keys)


def test_shadow_split_ai_is_the_same_in_any_chunk_of_shadows():
    """A shadow's Split-AI depends on its index alone (what the Ray backend relies on)."""
    pool, membership, canaries, spec, schema, transfer = _setup()
    job = ShadowJob(spec, schema, pool, canaries, membership, transfer, {"pool": pool.X})
    together = train_teachers(job, [0, 1, 2, 3])
    apart = train_teachers(job, [2])
    assert np.allclose(together["pool"][2], apart["pool"][0], atol=1e-5)
    assert together["transfer"].shape == (4, 40, 3)


@pytest.mark.parametrize(("teacher", "match"), [
    ({"split_ai": {"k": 3, "l": 3}}, "l must be smaller than k"),
    ({"split_ai": {"k": 4, "l": 1}, "ensemble": 2}, r"\[teacher.split_ai\].*\[teacher\].ensemble"),
    ({"hamp": {"gamma": 0.9}, "label_smoothing": 0.1}, "label_smoothing = 0"),
    ({"hamp": {"gamma": 1.5}}, "gamma"),
])
def test_bad_defense_settings_name_the_field(teacher, match):
    with pytest.raises(ConfigError, match=match):
        parse_spec({"teacher": teacher}, base_dir=Path("/tmp"))


def test_split_ai_with_pate_is_refused():
    with pytest.raises(ConfigError, match=r'split_ai.*mechanism = "pate"'):
        parse_spec({"teacher": {"split_ai": {"k": 4, "l": 1}}, "privacy": {"mechanism": "pate"}}, base_dir=Path("/tmp"))


def test_self_distilled_shadows_label_and_distill_their_own_training_sets():
    """Each shadow labels its own training rows (members by its non-seeing sub-teachers) and distills on them."""
    from distillguard.audit.pipelines import train_students

    pool, membership, canaries, _, schema, _ = _setup()
    spec = parse_spec({"teacher": {"hidden": [8], "epochs": 2, "split_ai": {"k": 3, "l": 1, "self_distill": True}},
                       "student": {"hidden": [8], "epochs": 2},
                       "audit": {"shadows": 4, "canaries": 4, "bootstrap": 0}}, base_dir=Path("/tmp"))
    job = ShadowJob(spec, schema, pool, canaries, membership, np.zeros((0, 8), np.float32), {"pool": pool.X})
    out, plans = train_shadow_split_ai(pool, canaries, membership, spec=spec, schema=schema, transfer_X=job.transfer_X,
                                       eval_sets=job.teacher_sets, shadow_ids=[0, 1])
    n_own = int(membership[0].sum()) + int(canaries.repeats.sum())
    assert out["transfer"].shape == (2, n_own, 3)
    for i, s in enumerate([0, 1]):
        X, _, _, _ = _shadow_training_set(s, pool, canaries, membership, val_fraction=0.0, seed=spec.run.seed)
        scaler = Standardizer.fit(X)  # no public row: the shadow's own statistics, as the real Split-AI's are the members'
        assert np.array_equal(plans[i].X, scaler.transform(X))
        # its own pool members get the same answer as a label as when the audit reads them: their non-seeing sub-teachers
        m = int(membership[s].sum())
        assert np.allclose(out["transfer"][i][:m], out["pool"][i][membership[s]], atol=1e-6)
    teachers = train_teachers(job, [0, 1, 2, 3])
    students = train_students(job, teachers, [0, 1, 2, 3])
    assert students["pool"].shape == (4, 60, 3) and np.isfinite(students["pool"]).all()
    assert not np.allclose(students["pool"][0], students["pool"][1])  # own sets, own students
    alone = train_students(job, {k: v[2:3] for k, v in teachers.items()}, [2])
    assert np.allclose(alone["pool"][0], students["pool"][2], atol=1e-5)  # a shadow depends on its index alone


def test_self_distillation_with_a_transfer_selection_is_one_line_error():
    with pytest.raises(ConfigError) as caught:
        parse_spec({"teacher": {"split_ai": {"k": 4, "l": 1, "self_distill": True}},
                    "transfer": {"select": "low_entropy", "keep_fraction": 0.5}}, base_dir=Path("/tmp"))
    message = str(caught.value)
    assert "\n" not in message and "self_distill = true" in message and "select = 'low_entropy'" in message
