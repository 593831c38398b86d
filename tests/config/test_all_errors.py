"""Every problem of a spec in one error: cross-section rules in different sections all appear."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.config import ClassifierSpec, LMSpec, Spec, load_spec, parse_spec
from distillguard.errors import ConfigError


def _problems(tmp_path: Path, text: str) -> str:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_cross_section_errors_of_several_sections_come_together(tmp_path):
    message = _problems(tmp_path, '[teacher]\nensemble = 2\npath = "t"\n[distill]\nloss = "jsd"\n'
                                  '[privacy]\nmechanism = "pate"\n[softlabels]\ntop_k = 3\n'
                                  '[audit]\nattacks = ["loss"]\nshadows = 0\n[gate]\nattack = "rmia"\n'
                                  'max_perplexity_ratio = 1.2\n')
    for part in ('[distill].loss: classifiers distill with "kl" (got \'jsd\')',
                 "[gate]: ['max_perplexity_ratio'] apply to causal LMs only",
                 "[teacher].ensemble = 2 is the non-private ensemble",
                 "[teacher].ensemble trains teachers; it cannot be combined with [teacher].path",
                 '[softlabels] and [transfer] knobs apply to soft labels; mechanism = "pate"',
                 "[gate].attack = 'rmia' is not among [audit].attacks ['loss']",
                 '[teacher].path cannot be used with [privacy].mechanism = "pate"'):
        assert part in message, message


def test_lm_track_errors_of_several_sections_come_together(tmp_path):
    message = _problems(tmp_path, '[data]\nbuiltin = "pii-corpus"\n[student]\nkind = "mlp"\n'
                                  '[audit]\nbackend = "ray"\n[gate]\npopulation = "canaries"\n'
                                  '[transfer]\nsize = 10\n')
    for part in ('[student].kind: text data (format = "jsonl" / builtin = "pii-corpus") needs kind = "causal-lm"',
                 "[audit].backend: 'ray' distributes shadow pipelines",
                 '[gate].population: a causal-LM audit has population "all" only',
                 "[transfer]: the classifier defense knobs are not supported for causal LMs",
                 '[gate].population = "canaries" needs [audit].canaries > 0'):
        assert part in message, message


def test_every_problem_within_a_section_comes_together(tmp_path):
    message = _problems(tmp_path, '[data]\nbuiltin = "digits"\nmembers = "m.csv"\ninput_shape = [1, 8, 8]\n'
                                  '[audit]\nshadows = 3\nray_address = "auto"\n')
    for part in ("[data]: builtin = 'digits' takes no files (got members)", "has its own input shape",
                 "shadows must be even", "ray_address = 'auto' applies to backend"):
        assert part in message, message


def test_the_data_picks_the_track():
    assert type(load_spec(None)) is ClassifierSpec and not load_spec(None).is_lm
    lm = parse_spec({"data": {"builtin": "pii-corpus"}}, base_dir=Path("/tmp"))
    assert type(lm) is LMSpec and lm.is_lm and isinstance(lm, Spec)
    files = {role: f"{role}.jsonl" for role in ("members", "nonmembers", "transfer", "test")}
    assert parse_spec({"data": files}, base_dir=Path("/tmp")).is_lm  # the suffix tells, as for the format
    assert Spec.model_validate(lm) is lm
    assert "track" not in lm.to_toml() and "track" not in load_spec(None).to_toml()  # no new key


def test_the_union_is_built_through_validation():
    with pytest.raises(TypeError, match="model_validate"):
        Spec()
    errors = pytest.raises(ValueError, Spec.model_validate, {"teacher": {"lr": -1}}).value.errors()
    assert [e["loc"] for e in errors] == [("teacher", "lr")]  # no track tag in the path
