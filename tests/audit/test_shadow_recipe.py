"""The shadow recipe ("replay" vs "plain") chosen leave-one-out on the shadows, never on the target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distillguard.audit.classifier_audit import _Audit
from distillguard.audit.placement import Shadows
from distillguard.audit.selection import (Configuration, leave_one_out_scores, low_fpr_power, select_configuration,
                                          select_recipe)
from distillguard.audit.shadow_recipes import shadow_recipe
from distillguard.audit.shadows import AuditPool, ShadowLogits, paired_membership
from distillguard.audit.signals import TargetSignals
from distillguard.config import parse_spec
from distillguard.errors import ConfigError

C, S, N = 3, 8, 300


def _logits(phi: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Logits whose LiRA statistic z_y − logsumexp_{i≠y} z_i is exactly ``phi``."""
    z = np.zeros((*phi.shape, C))
    np.put_along_axis(z, np.broadcast_to(labels, phi.shape)[..., None], (phi + np.log(C - 1))[..., None], axis=-1)
    return z


def _world(seed=0):
    """Replayed shadows (noisy), and two plain variants of the same shadows: one with exact
    centres (a better calibrator of the replayed models), one whose records' centres are
    scrambled (shadows of other data: they calibrate nothing)."""
    rng = np.random.default_rng(seed)
    labels, difficulty = rng.integers(0, C, N), rng.normal(0, 2, N)
    membership = paired_membership(N, S, seed=seed)
    noise = np.where(np.arange(N) % 2 == 0, 0.3, 1.5)
    replay = difficulty + 2.0 * membership + noise * rng.normal(size=(S, N))
    exact = difficulty + 2.0 * membership + 0.05 * rng.normal(size=(S, N))
    scrambled = rng.permutation(difficulty) + 2.0 * membership + noise * rng.normal(size=(S, N))
    target_in = rng.random(N) < 0.5
    target = difficulty + 2.0 * target_in + noise * rng.normal(size=N)
    return dict(labels=labels, membership=membership, target_in=target_in, target=_logits(target, labels),
                **{name: _logits(phi, labels) for name, phi in (("replay", replay), ("exact", exact), ("scrambled", scrambled))})


def test_the_recipe_with_the_higher_held_out_criterion_is_kept_and_its_criterion_recomputes():
    w = _world()
    common = dict(membership=w["membership"], labels=w["labels"])
    for plain, expected in (("exact", "plain"), ("scrambled", "replay")):
        recipe, chosen, table, by_recipe = select_recipe({"replay": (w["replay"], None), "plain": (w[plain], None)},
                                                         **common)
        assert recipe == expected
        powers = {name: row["power"] for name, row in by_recipe.items()}
        assert powers[recipe] == max(powers.values())
        assert by_recipe[recipe]["configuration"] == chosen.to_dict()
        # the replay's numbers are select_configuration's own (held out = calibrating recipe)
        replay_config, _ = select_configuration(logits=w["replay"], **common)
        assert by_recipe["replay"]["configuration"] == replay_config.to_dict()
        # plain: calibrated on the plain shadows, scored on the held-out *replayed* shadows
        config = Configuration(**by_recipe["plain"]["configuration"])
        scores, is_member = leave_one_out_scores(config, logits=w[plain], target_logits=w["replay"], **common)
        assert by_recipe["plain"]["power"] == pytest.approx(low_fpr_power(scores, is_member)[0], abs=1e-6)
        assert {row["attack"] for row in table} == {"lira_online", "lira_offline"}
    assert by_recipe["plain"]["power"] < 0.05 < by_recipe["replay"]["power"]  # scrambled shadows calibrate nothing


def test_identical_recipes_tie_and_the_tie_goes_to_replay():
    w = _world()
    recipe, _, _, by_recipe = select_recipe({"replay": (w["replay"], None), "plain": (w["replay"].copy(), None)},
                                            membership=w["membership"], labels=w["labels"])
    assert recipe == "replay" and by_recipe["replay"] == by_recipe["plain"]


def _audit_of(w, is_member, plain="exact"):
    spec = parse_spec({"audit": {"bootstrap": 0, "canaries": 0, "attacks": ["loss", "lira_online", "strongest"]}},
                      base_dir=Path("/tmp"))  # no population records here: no RMIA
    pool = AuditPool(X=np.zeros((N, 1)), y=w["labels"], is_member=is_member, example_ids=[f"r{i}" for i in range(N)])
    empty = np.zeros((S, 0, C))
    variant = {name: {"student": ShadowLogits(w[name], None, empty)} for name in ("replay", plain)}
    shadows = Shadows(w["membership"], None, variant["replay"], "replay", variant[plain])
    audit = _Audit(spec, pool, None, shadows)
    audit.attack_target("student", TargetSignals(w["target"], w["labels"]))
    return audit


def test_permuting_the_targets_membership_labels_leaves_the_chosen_recipe_unchanged():
    w = _world()  # where the exact-centre plain shadows win (the test above)
    truth = w["target_in"]
    permuted = np.random.default_rng(7).permutation(truth)
    assert (permuted != truth).mean() > 0.3
    audits = [_audit_of(w, truth), _audit_of(w, permuted)]
    first, second = (a.selections["student"] for a in audits)
    assert first == second and first["shadow_recipe"]["chosen"] == "plain"
    rows = [next(r for r in a.results if r["attack"] == "strongest") for a in audits]
    assert rows[0]["shadow_recipe"] == rows[1]["shadow_recipe"] == "plain"
    assert rows[0]["auc"] > 0.8 and abs(rows[1]["auc"] - 0.5) < 0.1  # the labels do reach the measurement
    # every attack on the target is calibrated on the chosen recipe's shadows
    assert audits[0].shadow_logits["student"].pool is w["exact"]
    lira = next(r for r in audits[0].results if r["attack"] == "lira_online")
    assert lira["auc"] > 0.8


def _spec(recipe: str, **sections):
    return parse_spec({"audit": {"shadow_recipe": recipe}, **sections}, base_dir=Path("/tmp"))


def test_what_each_mode_trains():
    assert shadow_recipe(_spec("auto")) == "both"
    assert shadow_recipe(_spec("replay")) == "replay"
    assert shadow_recipe(_spec("plain")) == "plain"
    # nothing selects a checkpoint: the recipes are one and the same, nothing extra is trained
    assert shadow_recipe(_spec("auto", teacher={"val_fraction": 0.0}, student={"val_fraction": 0.0})) == "replay"
    # without "strongest" there is nothing to choose with
    assert shadow_recipe(_spec("auto") .model_copy(update={"audit": _spec("auto").audit.model_copy(
        update={"attacks": ["loss", "lira_online"]})})) == "replay"
    assert shadow_recipe(_spec("auto", teacher={"ensemble": 4})) == "replay"
    with pytest.raises(ConfigError, match='shadow_recipe = "plain" covers a single teacher'):
        shadow_recipe(_spec("plain", teacher={"ensemble": 4}))


def test_a_bad_recipe_name_is_a_one_line_spec_error():
    with pytest.raises(Exception, match="shadow_recipe"):
        _spec("last")
