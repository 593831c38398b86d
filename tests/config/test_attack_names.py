"""The one catalogue of attack names, and the strongest-attack order both of its users read."""

from __future__ import annotations

import itertools
import tomllib
from pathlib import Path
from typing import get_args

import pytest

from distillguard import attack_names as names
from distillguard.audit.attacks import ATTACKS
from distillguard.config import AuditConfig, load_spec, parse_spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.toml"))


def test_the_registry_and_the_schema_hold_the_catalogue():
    # "strongest" is a chosen registered one; the label-only attacks query the model (audit/label_only.py)
    assert (*ATTACKS, names.SELECTED_ATTACK, *names.LABEL_ONLY_ATTACKS) == names.CLASSIFIER_ATTACKS
    assert not set(names.LABEL_ONLY_ATTACKS) & set(ATTACKS)
    assert set(get_args(names.AttackName)) == set(names.CLASSIFIER_ATTACKS) | set(names.LM_ATTACKS)
    assert names.ALL_ATTACKS == get_args(names.AttackName)
    assert sorted(names.STRONGEST) == sorted(names.ALL_ATTACKS)
    assert get_args(AuditConfig.model_fields["attacks"].annotation) == (names.AttackName,)


def _old_gate_default(attacks):
    return next((a for a in ("strongest", "lira_online", "rmia", "lira_offline", "reference", "min_k_pp",
                             *names.THRESHOLD_ATTACKS, "label_noise", "label_gap", "zlib", "min_k") if a in attacks),
                None)  # the label-only attacks, added later, come after every attack that reads probabilities


def _old_canary_attack(scored, attacks):
    return next((a for a in ("strongest", "lira_online", "rmia", "lira_offline", "loss") if a in scored), attacks[0])


@pytest.mark.parametrize("size", [1, 2, 3])
def test_one_order_reproduces_both_former_choices(size):
    for attacks in itertools.permutations(names.ALL_ATTACKS, size):
        assert names.strongest_attack(attacks) == _old_gate_default(attacks)
    for attacks in itertools.permutations(names.CLASSIFIER_ATTACKS, size):
        picked = names.strongest_attack(attacks, down_to="loss") or attacks[0]
        assert picked == _old_canary_attack(attacks, attacks)


@pytest.mark.parametrize("path", [None, *EXAMPLES], ids=lambda p: "demo" if p is None else p.name)
def test_the_demo_and_examples_pick_what_they_did(path):
    spec = load_spec(path)
    expected = {None: "strongest", "digits-cnn.toml": "strongest", "purchases.toml": "strongest",
                "pii-corpus.toml": "reference", "news-pii.toml": "reference"}[None if path is None else path.name]
    given = {} if path is None else tomllib.loads(path.read_text()).get("gate", {})
    assert spec.gate.attack == given.get("attack", expected)
    if spec.audit.canaries:  # the classifier audit's one-run ε bound on the canaries
        attacks = spec.audit.attacks
        expected = "strongest" if "strongest" in attacks else "lira_online"
        assert names.strongest_attack(attacks, down_to="loss") == _old_canary_attack(attacks, attacks) == expected


def test_the_gate_reads_strongest_by_default_and_an_explicit_attack_still_works():
    spec = parse_spec({}, base_dir=Path("/tmp"))
    assert spec.gate.attack == "strongest" and "strongest" in spec.audit.attacks
    assert "attack = \"strongest\"" in spec.to_toml()  # the resolved spec shows it
    explicit = parse_spec({"gate": {"attack": "lira_offline"}}, base_dir=Path("/tmp"))
    assert explicit.gate.attack == "lira_offline"
    two = parse_spec({"audit": {"shadows": 2, "canaries": 0}}, base_dir=Path("/tmp"))  # too few to hold one out
    assert "strongest" not in two.audit.attacks and two.gate.attack == "lira_online"


def test_strongest_needs_four_shadows():
    with pytest.raises(Exception, match="strongest.*needs shadows >= 4"):
        parse_spec({"audit": {"shadows": 2, "canaries": 0, "attacks": ["strongest"]}}, base_dir=Path("/tmp"))


def test_no_shadows_gate_reads_loss():
    spec = parse_spec({"audit": {"shadows": 0}}, base_dir=Path("/tmp"))
    assert spec.gate.attack == "loss"
