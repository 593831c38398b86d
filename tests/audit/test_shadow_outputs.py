"""audit/shadow_outputs.npz: the documented layout, readable without pickle, the same bytes for the same arrays."""

from __future__ import annotations

import numpy as np

from distillguard.audit.placement import Shadows
from distillguard.audit.shadow_outputs import read_shadow_outputs, shadow_arrays, write_shadow_outputs
from distillguard.audit.shadows import CanarySet, ShadowLogits
from distillguard.audit.signals import TargetSignals


def _arrays(rng):
    S, n, m, K, C = 4, 6, 5, 3, 3
    canaries = CanarySet(X=np.zeros((K, 2)), y=np.array([0, 2, 1]), decoy_X=np.zeros((K, 2)), decoy_y=np.zeros(K, int),
                         repeats=np.ones(K, int), kind=["a"] * K, included=rng.random((S, K)) < 0.5)
    logits = {t: ShadowLogits(rng.normal(size=(S, n, C)), rng.normal(size=(S, m, C)), rng.normal(size=(S, K, C)))
              for t in ("teacher", "student")}
    shadows = Shadows(rng.random((S, n)) < 0.5, canaries, logits)
    targets = {t: TargetSignals(rng.normal(size=(n, C)), rng.integers(0, C, n), rng.normal(size=(m, C)),
                                rng.integers(0, C, m)) for t in ("teacher", "student")}
    return shadow_arrays(pool_ids=[f"members:{i}" for i in range(n)], pool_labels=rng.integers(0, C, n),
                         pool_is_member=np.arange(n) < 3, population_labels=rng.integers(0, C, m), shadows=shadows,
                         targets=targets), shadows, targets


def test_layout_round_trip_and_determinism(tmp_path):
    arrays, shadows, targets = _arrays(np.random.default_rng(0))
    assert set(arrays) == {
        "pool_example_ids", "pool_labels", "pool_is_member", "shadow_membership", "population_labels",
        "canary_labels", "canary_included",
        *(f"{t}_{k}" for t in ("teacher", "student") for k in (
            "shadow_pool_logits", "shadow_population_logits", "shadow_canary_logits", "pool_logits",
            "population_logits"))}
    write_shadow_outputs(tmp_path / "a.npz", arrays)
    write_shadow_outputs(tmp_path / "b.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.npz").stat().st_mode & 0o777 == 0o600
    back = read_shadow_outputs(tmp_path / "a.npz")  # allow_pickle=False: no object arrays inside
    assert set(back) == set(arrays)
    np.testing.assert_array_equal(back["student_shadow_pool_logits"], shadows.logits["student"].pool)
    np.testing.assert_array_equal(back["teacher_pool_logits"], targets["teacher"].logits)
    np.testing.assert_array_equal(back["shadow_membership"], shadows.membership)
    assert back["pool_example_ids"].dtype.kind == "U" and back["pool_example_ids"][2] == "members:2"
    with np.load(tmp_path / "a.npz", allow_pickle=False) as plain:  # what the docs tell an auditor to run
        assert plain["canary_included"].shape == (4, 3) and plain["canary_included"].dtype == bool


def test_label_noise_predictions_are_kept_to_recompute_the_choice_of_sigma():
    from distillguard.audit.label_only import SHADOW_SET, SIGMAS, NoisePlan, choose_sigma

    rng = np.random.default_rng(1)
    S, n, m, C, N = 4, 6, 5, 3, 2
    plan = NoisePlan.build(rng.normal(size=(n, 2)), rng.normal(size=(9, 2)), copies=N, seed=0)
    extra = {f"{SHADOW_SET}{g}": rng.normal(size=(S, N * n, C)) for g in range(len(SIGMAS))}  # selection = all 6
    logits = {t: ShadowLogits(rng.normal(size=(S, n, C)), rng.normal(size=(S, m, C)), np.zeros((S, 0, C)), extra)
              for t in ("teacher", "student")}
    membership, labels = rng.random((S, n)) < 0.5, rng.integers(0, C, n)
    arrays = shadow_arrays(pool_ids=[f"members:{i}" for i in range(n)], pool_labels=labels,
                           pool_is_member=np.arange(n) < 3, population_labels=rng.integers(0, C, m),
                           shadows=Shadows(membership, None, logits), targets={}, label_noise=plan)
    assert arrays["label_noise_selection"].tolist() == list(range(n)) and arrays["label_noise_sigmas"].tolist() == list(SIGMAS)
    kept = arrays["teacher_shadow_label_noise_predictions"]
    assert kept.shape == (S, len(SIGMAS), N, n) and kept.dtype == np.int32
    assert np.array_equal(kept[:, 1].reshape(S, N * n), extra[f"{SHADOW_SET}1"].argmax(-1))
    # the σ the audit chose can be recomputed from the file alone
    again = choose_sigma(plan, clean_predicted=logits["teacher"].pool.argmax(-1),
                         noisy_predicted={f"{SHADOW_SET}{g}": kept[:, g].reshape(S, -1) for g in range(len(SIGMAS))},
                         membership=arrays["shadow_membership"], labels=arrays["pool_labels"])
    direct = choose_sigma(plan, clean_predicted=logits["teacher"].pool.argmax(-1),
                          noisy_predicted={k: v.argmax(-1) for k, v in extra.items()}, membership=membership, labels=labels)
    assert again == direct
