"""The reference code's fixed-variance LiRA, and the "strongest" configuration chosen on the shadows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from distillguard.audit.attacks import make_attack
from distillguard.audit.classifier_audit import _Audit
from distillguard.audit.metrics import tpr_at_fpr
from distillguard.audit.placement import Shadows
from distillguard.audit.selection import Configuration, leave_one_out_scores, select_configuration
from distillguard.audit.shadows import AuditPool, ShadowLogits, paired_membership
from distillguard.audit.signals import ReferenceSignals, TargetSignals
from distillguard.config import parse_spec

C = 3


def _logits(phi: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Logits whose LiRA statistic z_y − logsumexp_{i≠y} z_i is exactly ``phi`` (…, n)."""
    z = np.zeros((*phi.shape, C))
    np.put_along_axis(z, np.broadcast_to(labels, phi.shape)[..., None], (phi + np.log(C - 1))[..., None], axis=-1)
    return z


def _world(S=16, n=400, m=300, shift=2.0, seed=0):
    """Shadows and a target whose φ = difficulty_j + shift·member + heteroscedastic noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n)
    difficulty = rng.normal(0, 2, n)
    noise = np.where(np.arange(n) % 2 == 0, 0.3, 1.5)
    membership = paired_membership(n, S, seed=seed)
    target_in = rng.random(n) < 0.5
    shadow_phi = difficulty + shift * membership + noise * rng.normal(size=(S, n))
    target_phi = difficulty + shift * target_in + noise * rng.normal(size=n)
    pop_labels = rng.integers(0, C, m)
    pop_phi = rng.normal(0, 2, m) + 0.5 * rng.normal(size=(S + 1, m))
    return dict(labels=labels, membership=membership, target_in=target_in,
                shadow_logits=_logits(shadow_phi, labels), target_logits=_logits(target_phi, labels),
                pop_labels=pop_labels, shadow_pop=_logits(pop_phi[:S], pop_labels), target_pop=_logits(pop_phi[S], pop_labels))


def _reference_lira_online_fixed(keep, scores, check_scores):
    """tensorflow/privacy research/mi_lira_2021/plot.py generate_ours(fix_variance=True), one augmentation.

    Returns the member score (the reference negates its prediction before roc_curve)."""
    dat_in = [scores[keep[:, j], j] for j in range(scores.shape[1])]
    dat_out = [scores[~keep[:, j], j] for j in range(scores.shape[1])]
    in_size, out_size = min(map(len, dat_in)), min(map(len, dat_out))
    dat_in = np.array([x[:in_size] for x in dat_in])
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_in, mean_out = np.median(dat_in, 1), np.median(dat_out, 1)
    std_in = std_out = np.std(dat_in)
    pr_in = -scipy.stats.norm.logpdf(check_scores, mean_in, std_in + 1e-30)
    pr_out = -scipy.stats.norm.logpdf(check_scores, mean_out, std_out + 1e-30)
    return -(pr_in - pr_out)


def _phi(logits, labels):
    z_y = np.take_along_axis(logits, np.broadcast_to(labels, logits.shape[:-1])[..., None], axis=-1)[..., 0]
    return z_y - np.log(C - 1)


@pytest.mark.parametrize("held_out", [None, 0], ids=["paired", "one held out: uneven counts, truncated"])
def test_fixed_variance_online_lira_is_the_reference_code(held_out):
    w = _world()
    keep = np.ones(16, bool) if held_out is None else np.arange(16) != held_out
    logits, membership = w["shadow_logits"][keep], w["membership"][keep]
    reference = ReferenceSignals(logits, membership, w["labels"])
    ours = make_attack("lira_online", variance="fixed").fit(reference).score(TargetSignals(w["target_logits"], w["labels"]))
    theirs = _reference_lira_online_fixed(membership, _phi(logits, w["labels"]), _phi(w["target_logits"], w["labels"]))
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_fixed_variance_offline_lira_centres_on_medians_with_the_out_values_spread():
    w = _world()
    phi = _phi(w["shadow_logits"], w["labels"])
    attack = make_attack("lira_offline", variance="fixed").fit(ReferenceSignals(w["shadow_logits"], w["membership"], w["labels"]))
    out_values = np.array([phi[~w["membership"][:, j], j] for j in range(phi.shape[1])])
    np.testing.assert_allclose(attack.out_[0], np.median(out_values, 1))
    np.testing.assert_allclose(attack.out_[1], np.std(out_values))  # the reference: np.std(dat_out), one σ
    # the pooled within-record σ is smaller: it leaves out the spread between records (std 2 here)
    pooled = make_attack("lira_offline", variance="global").fit(ReferenceSignals(w["shadow_logits"], w["membership"], w["labels"]))
    assert pooled.out_[1][0] < 1.5 < attack.out_[1][0]


def test_selection_picks_the_best_leave_one_out_power_and_reports_every_candidate():
    w = _world()
    chosen, table = select_configuration(logits=w["shadow_logits"], membership=w["membership"], labels=w["labels"],
                                         population_logits=w["shadow_pop"], population_labels=w["pop_labels"])
    assert len(table) == 13 and {row["attack"] for row in table} == {"lira_online", "lira_offline", "rmia"}
    best = max(table, key=lambda row: row["power"])
    assert chosen.to_dict() == {"attack": best["attack"], "params": best["params"]}
    # recomputed independently: the chosen candidate's pooled held-out TPRs
    scores, is_member = leave_one_out_scores(chosen, logits=w["shadow_logits"], membership=w["membership"],
                                             labels=w["labels"], population_logits=w["shadow_pop"],
                                             population_labels=w["pop_labels"])
    assert len(scores) == 16 * 400 and is_member.sum() == 16 * 200
    expected = np.mean([tpr_at_fpr(scores, is_member, 0.01), tpr_at_fpr(scores, is_member, 0.001)])
    assert best["power"] == pytest.approx(expected, abs=1e-6)
    # half the records are nearly noiseless: a member shifts φ by 2 σ_noise·6, so power is high
    assert best["power"] > 0.3
    # per-record variance matters here (σ 0.3 vs 1.5): a pooled σ must not beat the chosen one
    pooled = next(r for r in table if r["attack"] == "lira_online" and r["params"] == {"variance": "global"})
    assert best["power"] >= pooled["power"]


def test_without_a_membership_signal_no_candidate_has_power():
    w = _world(shift=0.0)
    _, table = select_configuration(logits=w["shadow_logits"], membership=w["membership"], labels=w["labels"],
                                    population_logits=w["shadow_pop"], population_labels=w["pop_labels"])
    assert max(row["power"] for row in table) < 0.05
    assert all(0.4 < row["auc"] < 0.6 for row in table)


def test_selection_needs_three_shadows():
    w = _world(S=2)
    with pytest.raises(ValueError, match="at least 3 shadow pipelines"):
        select_configuration(logits=w["shadow_logits"], membership=w["membership"], labels=w["labels"])


def _audit_of(w, is_member):
    spec = parse_spec({"audit": {"bootstrap": 0, "canaries": 0}}, base_dir=Path("/tmp"))
    n = len(is_member)
    pool = AuditPool(X=np.zeros((n, 1)), y=w["labels"], is_member=is_member, example_ids=[f"r{i}" for i in range(n)])
    empty = np.zeros((len(w["membership"]), 0, C))
    shadows = Shadows(w["membership"], None, {"student": ShadowLogits(w["shadow_logits"], w["shadow_pop"], empty)})
    audit = _Audit(spec, pool, w["pop_labels"], shadows)
    audit.attack_target("student", TargetSignals(w["target_logits"], w["labels"], w["target_pop"], w["pop_labels"]))
    return audit


def test_permuting_the_targets_membership_labels_leaves_the_chosen_configuration_unchanged():
    w = _world(seed=3)
    truth = w["target_in"]
    permuted = np.random.default_rng(7).permutation(truth)
    assert (permuted != truth).mean() > 0.3
    audits = [_audit_of(w, truth), _audit_of(w, permuted)]
    first, second = (a.selections["student"] for a in audits)
    assert first == second  # the chosen configuration and every candidate's held-out numbers
    rows = [next(r for r in a.results if r["attack"] == "strongest") for a in audits]
    assert rows[0]["configuration"] == rows[1]["configuration"] == first["chosen"]
    # the labels do change what is measured on the target (so the test can see a difference)
    assert rows[0]["auc"] > 0.8 and abs(rows[1]["auc"] - 0.5) < 0.1
    # and the "strongest" scores are the chosen configuration's, fitted on all shadows
    chosen = Configuration(first["chosen"]["attack"], first["chosen"]["params"])
    fitted = chosen.build().fit(ReferenceSignals(w["shadow_logits"], w["membership"], w["labels"], w["shadow_pop"],
                                                 w["pop_labels"]))
    expected = fitted.score(TargetSignals(w["target_logits"], w["labels"], w["target_pop"], w["pop_labels"]))
    got = np.array(audits[0].rows.columns["score"])[np.array(audits[0].rows.columns["attack"]) == "strongest"]
    np.testing.assert_allclose(got, expected)
