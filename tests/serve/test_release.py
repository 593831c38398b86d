"""The release policy: spec validation, the coarser-than order, and the output forms."""

from __future__ import annotations

import re

import numpy as np
import pytest
from pydantic import ValidationError

from distillguard.bundle import release_predictions
from distillguard.config.deploy import AUDITED_CLASSIFIER_OUTPUT, DeployConfig, finer_than

PROBS = np.array([[0.1234567, 0.6543210, 0.2222223], [0.5, 0.25, 0.25]])
CLASSES = ["a", "b", "c"]


def form(output: str, top_k: int | None = None, decimals: int | None = None) -> dict:
    return {"output": output, "top_k": top_k, "decimals": decimals}


def test_probabilities_pass_through_unchanged():
    assert release_predictions(PROBS, CLASSES, form("probabilities")) == PROBS.tolist()


def test_rounded_probabilities():
    assert release_predictions(PROBS, CLASSES, form("probabilities", decimals=2)) == [[0.12, 0.65, 0.22], [0.5, 0.25, 0.25]]


def test_top_k_pairs_in_descending_order_ties_in_class_order():
    out = release_predictions(PROBS, CLASSES, form("top_k", top_k=2, decimals=3))
    assert out == [[["b", 0.654], ["c", 0.222]], [["a", 0.5], ["b", 0.25]]]


def test_label_only():
    assert release_predictions(PROBS, CLASSES, form("label")) == ["b", "a"]


@pytest.mark.parametrize("release, audited, finer", [
    (form("probabilities"), AUDITED_CLASSIFIER_OUTPUT, False),
    (form("label"), AUDITED_CLASSIFIER_OUTPUT, False),
    (form("top_k", top_k=3, decimals=2), AUDITED_CLASSIFIER_OUTPUT, False),
    (form("probabilities"), form("label"), True),
    (form("top_k", top_k=2), form("top_k", top_k=2, decimals=3), True),   # more decimals than audited
    (form("top_k", top_k=3, decimals=2), form("top_k", top_k=2, decimals=3), True),  # more classes
    (form("top_k", top_k=1, decimals=2), form("top_k", top_k=2, decimals=3), False),
    (form("probabilities", decimals=4), form("top_k", top_k=2), True),
])
def test_finer_than_orders_forms(release, audited, finer):
    assert (finer_than(release, audited) is not None) is finer


@pytest.mark.parametrize("keys, message", [
    ({"output": "top_k"}, "needs top_k"),
    ({"output": "label", "top_k": 2}, "top_k applies"),
    ({"output": "label", "decimals": 2}, "decimals rounds probabilities"),
    ({"output": "logits"}, "probabilities"),
    ({"decimals": 12}, "less than or equal to 8"),
])
def test_deploy_config_rejects(keys, message):
    with pytest.raises(ValidationError, match=message):
        DeployConfig(**keys)


def test_spec_deploy_keys_of_the_other_track_are_refused(tmp_path):
    from distillguard.config import parse_spec
    from distillguard.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[deploy\]: output set a classifier's release; a causal LM's is decoding"):
        parse_spec({"data": {"builtin": "pii-corpus"}, "deploy": {"output": "label"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"\[deploy\]: decoding apply to causal LMs' generation only"):
        parse_spec({"data": {"builtin": "purchase-synth"}, "deploy": {"decoding": "greedy"}}, base_dir=tmp_path)


@pytest.mark.parametrize(("deploy", "message"), [
    ({"max_new_tokens": 65}, 'max_new_tokens = 65: the audit generated at most 64 tokens with decoding = "sample"'),
    ({"decoding": "greedy", "max_new_tokens": 33}, "at most 32 tokens with decoding = \"greedy\""),
    ({"generation_top_k": 50}, "generation_top_k = 50: the audit sampled with top-k 0 (full distribution) or 40"),
    ({"generation_top_k": 40, "max_new_tokens": 8}, None),
    ({"generation_top_k": 0, "max_new_tokens": 8}, None),
])
def test_lm_generation_beyond_the_audit_is_refused(tmp_path, deploy, message):
    from distillguard.config import parse_spec
    from distillguard.errors import ConfigError

    if message is None:  # covered: accepted
        parse_spec({"data": {"builtin": "pii-corpus"}, "deploy": deploy}, base_dir=tmp_path)
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_spec({"data": {"builtin": "pii-corpus"}, "deploy": deploy}, base_dir=tmp_path)


def test_lm_default_top_k_follows_the_probes_that_ran(tmp_path):
    """Without the extraction probe the audit sampled the full distribution only: unset top-k means that."""
    from distillguard.config import parse_spec
    from distillguard.config.deploy import audited_generation, generation_policy

    spec = parse_spec({"data": {"builtin": "pii-corpus"}, "audit": {"lm": {"extraction_samples": 0}}},
                      base_dir=tmp_path)
    policy = generation_policy(spec.deploy, audited_generation(spec.audit.lm))
    assert policy == {"decoding": "sample", "temperature": 1.0, "top_k": None, "max_new_tokens": 24}


def test_lm_generation_policy_follows_the_probes(tmp_path):
    from distillguard.config import parse_spec
    from distillguard.config.deploy import audited_generation, generation_policy
    from distillguard.errors import ConfigError

    spec = parse_spec({"data": {"builtin": "pii-corpus"}, "deploy": {"decoding": "greedy"}}, base_dir=tmp_path)
    audited = audited_generation(spec.audit.lm)
    assert audited == {"temperature": 1.0, "greedy_max_new_tokens": 32, "sample_max_new_tokens": 64,
                       "sample_top_k": [None, 40]}
    assert generation_policy(spec.deploy, audited) == {"decoding": "greedy", "temperature": 1.0, "top_k": None,
                                                       "max_new_tokens": 32}
    off = parse_spec({"data": {"builtin": "pii-corpus"}, "audit": {"lm": {"pii_samples": 0, "extraction_samples": 0}}},
                     base_dir=tmp_path)
    assert generation_policy(off.deploy, audited_generation(off.audit.lm))["decoding"] == "greedy"  # unset: audited one
    with pytest.raises(ConfigError, match='decoding = "sample": the audit generated no sample completion'):
        parse_spec({"data": {"builtin": "pii-corpus"}, "deploy": {"decoding": "sample"},
                    "audit": {"lm": {"pii_samples": 0, "extraction_samples": 0}}}, base_dir=tmp_path)


def test_spec_deploy_errors_name_the_key(tmp_path):
    from distillguard.config import parse_spec
    from distillguard.errors import ConfigError

    with pytest.raises(ConfigError, match=r"deploy.*top_k"):
        parse_spec({"deploy": {"output": "top_k"}}, base_dir=tmp_path)


REPORT = {
    "run": {"name": "cardrun"},
    "utility": {"teacher": {"test_accuracy": 0.81}, "student": {"test_accuracy": 0.7925}, "accuracy_gap": 0.0175},
    "privacy": {"mechanism": "none", "epsilon": None, "delta": None},
    "attacks": [{"attack": "lira_online", "target": "student", "population": "all", "auc": 0.5312,
                 "auc_ci": [0.51, 0.552], "tpr_at_fpr": {"0.01": 0.021, "0.001": None}}],
    "gate": {"passed": True, "checks": [{"name": "auc_upper", "value": 0.552, "threshold": 0.6, "passed": True}]},
}


def test_model_card_is_hugging_face_style_with_the_audit_and_the_release_policy():
    from distillguard.report.model_card import render_model_card

    card = render_model_card(REPORT, release=form("top_k", top_k=2, decimals=3))
    front, body = card.split("---\n", 2)[1:]
    assert "library_name: distillguard" in front and "value: 0.7925" in front
    for heading in ("## Intended use", "## Membership-inference audit", "## Release gate: PASSED", "## Release policy"):
        assert heading in body
    assert "| lira_online | student | all | 0.531 | 0.510–0.552 | 2.1% |" in body  # an all-n/a column is left out
    assert "the 2 most likely classes with their probabilities, rounded to 3 decimals" in body
    assert 'output = "top_k"' in body
    default = render_model_card(REPORT)
    assert "one probability per class" in default and 'output = "probabilities"' in default
