"""Labelled texts select kind = "hf-text" and its defaults; the track's rules name their keys."""

from __future__ import annotations

import pytest

import tomllib
from pathlib import Path

from distillguard.config import parse_spec as _parse
from distillguard.config.spec import CLASSIFIER_TRACK
from distillguard.errors import ConfigError



def parse_spec(raw):
    return _parse(raw, base_dir=Path("/work"))


FILES = {"members": "m.jsonl", "nonmembers": "n.jsonl", "transfer": "t.jsonl", "test": "e.jsonl"}


def test_run_and_data_only_gives_the_text_classifier_recipe():
    spec = parse_spec({"run": {"name": "bbc"}, "data": {"builtin": "bbc-news"}})
    assert spec.track == CLASSIFIER_TRACK and not spec.is_lm
    assert spec.teacher.kind == spec.student.kind == "hf-text"
    assert (spec.teacher.arch.layers, spec.teacher.arch.width, spec.teacher.epochs) == (1, 32, 10)
    assert spec.audit.shadows == 4 and spec.gate.attack == "strongest"
    assert spec.data.is_text_classification() and not spec.data.is_text()
    assert spec.data.text_settings().max_length == 64 and spec.data.effective_leak_policy() == "drop"
    assert parse_spec(tomllib.loads(spec.to_toml())) == spec  # the resolved spec reloads as itself


def test_jsonl_with_a_text_section_is_classification_not_a_language_model():
    spec = parse_spec({"data": {**FILES, "text": {"column": "body"}, "label": "topic"}})
    assert spec.teacher.kind == "hf-text" and spec.data.text.column == "body"
    lm = parse_spec({"data": FILES})
    assert lm.is_lm  # the same files without [data.text] are the causal-LM track


@pytest.mark.parametrize("raw, expected", [
    ({"data": {"builtin": "bbc-news"}, "teacher": {"kind": "mlp"}}, '[teacher].kind: labelled texts'),
    ({"data": {"builtin": "digits"}, "student": {"kind": "hf-text"}}, '[student].kind: "hf-text" needs labelled'),
    ({"data": {"builtin": "bbc-news"}, "privacy": {"mechanism": "dp-sgd", "epsilon": 8.0}}, "[privacy].mechanism"),
    ({"data": {"builtin": "bbc-news"}, "teacher": {"ensemble": 3}}, "[teacher].ensemble"),
    ({"data": {"builtin": "digits", "text": {}}}, "[data.text] is for"),
    ({"data": {"builtin": "bbc-news", "text": {"max_length": 4}}}, "max_length"),
])
def test_text_rules_name_their_keys(raw, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        parse_spec(raw)
