"""Spec loading: unknown keys, every error at once, paths relative to the spec file."""

import tomllib
from pathlib import Path

import pytest

from distillguard.config import Spec, load_spec, parse_spec
from distillguard.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_demo():
    spec = load_spec(None)
    assert spec.run.name == "demo" and spec.data.builtin == "purchase-synth"
    assert spec.distill.alpha == 0.0 and spec.privacy.mechanism == "none"


def test_unknown_key_names_the_field(tmp_path):
    path = _write(tmp_path, '[run]\nname = "x"\n[teacher]\nepochz = 3\n')
    with pytest.raises(ConfigError, match=r"\[teacher\]\.epochz: unknown key"):
        load_spec(path)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"\[bogus\]: unknown key"):
        load_spec(_write(tmp_path, "[bogus]\nx = 1\n"))


def test_all_errors_reported_at_once(tmp_path):
    path = _write(tmp_path, '[teacher]\nepochs = "many"\nlr = -1\n[distill]\ntemperature = 0\n')
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    for part in ("[teacher].epochs", "[teacher].lr", "[distill].temperature", "'many'"):
        assert part in message
    assert "\n" not in message


def test_paths_are_relative_to_the_spec_file(tmp_path):
    sub = tmp_path / "conf"
    sub.mkdir()
    path = sub / "spec.toml"
    path.write_text('[data]\nformat = "csv"\nmembers = "m.csv"\nnonmembers = "n.csv"\ntransfer = "../t.csv"\ntest = "x.csv"\n')
    spec = load_spec(path)
    assert spec.data.members == (sub / "m.csv").resolve()
    assert spec.data.transfer == (tmp_path / "t.csv").resolve()


def test_files_required_without_builtin(tmp_path):
    with pytest.raises(ConfigError, match="missing: nonmembers, transfer, test"):
        load_spec(_write(tmp_path, '[data]\nmembers = "m.csv"\n'))


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_spec(_write(tmp_path, "[run\n"))
    with pytest.raises(ConfigError, match="spec file not found"):
        load_spec(tmp_path / "nope.toml")


def test_gate_fpr_keys_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"\[gate\]\.max_tpr_at_fpr"):
        load_spec(_write(tmp_path, '[gate]\nmax_tpr_at_fpr = { "one percent" = 0.1 }\n'))


def test_resolved_spec_round_trips(tmp_path):
    spec = load_spec(_write(tmp_path, '[run]\nname = "rt"\nseed = 3\n[distill]\ntemperature = 2.5\n'))
    again = load_spec(_write(tmp_path, spec.to_toml()))
    assert again == spec
    assert isinstance(again, Spec)


def test_no_shadows_means_threshold_attacks_and_a_gate_on_them(tmp_path):
    spec = load_spec(_write(tmp_path, "[audit]\nshadows = 0\n"))
    assert spec.audit.attacks == ["loss", "confidence", "entropy", "modified_entropy"]
    assert spec.audit.canaries == 0 and spec.gate.attack == "loss"
    full = load_spec(_write(tmp_path, "[run]\nname = 'x'\n"))
    assert full.gate.attack == "strongest" and full.audit.canaries == 32


def test_gate_must_read_an_attack_that_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"\[gate\]\.attack = 'rmia' is not among"):
        load_spec(_write(tmp_path, '[audit]\nattacks = ["loss"]\nshadows = 0\n[gate]\nattack = "rmia"\n'))


@pytest.mark.parametrize(("text", "expected"), [
    ('[data]\nlable = "y"\n', "[data].lable: unknown key (did you mean 'label'?)"),
    ("[audit]\nShadows = 4\n", "[audit].Shadows: unknown key (did you mean 'shadows'?)"),
    ("[gaet]\nmax_auc = 0.5\n", "[gaet]: unknown key (did you mean 'gate'?)"),
    ("[data.synth]\nfeature = 8\n", "[data].synth.feature: unknown key (did you mean 'features'?)"),
    ("[teacher]\nlayers = 3\n", "[teacher].layers: unknown key (known keys: 'arch', 'batch_size',"),
])
def test_unknown_keys_say_what_was_meant(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_spec(_write(tmp_path, text))
    assert expected in str(info.value)


def test_classifiers_release_hard_labels_unless_the_user_chose_a_release() -> None:
    """The defended default (docs/results/real-data.md): hard labels, plain KD one key away."""
    assert parse_spec({}, base_dir=Path(".")).softlabels.labels == "hard"
    assert parse_spec({"softlabels": {"labels": "soft"}}, base_dir=Path(".")).softlabels.labels == "soft"
    chose_top_k = parse_spec({"softlabels": {"top_k": 3}}, base_dir=Path("."))  # a release of their own: kept
    assert chose_top_k.softlabels.labels == "soft" and chose_top_k.softlabels.top_k == 3
    pate = parse_spec({"privacy": {"mechanism": "pate"}}, base_dir=Path("."))  # PATE releases its noisy votes
    assert pate.softlabels.labels == "soft" and pate.softlabels.is_identity()
    dp = parse_spec({"privacy": {"mechanism": "dp-sgd", "epsilon": 8.0}}, base_dir=Path("."))
    assert dp.softlabels.labels == "hard"
    lm = parse_spec({"data": {"builtin": "pii-corpus"}}, base_dir=Path("."))  # an LM releases top-k log-probs
    assert lm.softlabels.is_identity()
    again = parse_spec(tomllib.loads(parse_spec({}, base_dir=Path(".")).to_toml()), base_dir=Path("."))
    assert again.softlabels.labels == "hard"  # the resolved spec says so and reads back the same


def test_the_defended_default_is_the_whole_recipe_only_where_no_defense_was_chosen() -> None:
    """Hard labels + a label-smoothed teacher + far-from-private transfer; each part yields to a user's choice."""
    default = parse_spec({}, base_dir=Path("."))
    assert (default.softlabels.labels, default.teacher.label_smoothing) == ("hard", 0.3)
    assert (default.transfer.select, default.transfer.keep_fraction) == ("far_from_private", 0.7)
    assert default.teacher.weight_decay == 0.0
    again = parse_spec(tomllib.loads(default.to_toml()), base_dir=Path("."))
    assert again.model_dump() == default.model_dump()  # the resolved spec reads back as the same run
    plain = parse_spec({"softlabels": {"labels": "soft"}}, base_dir=Path("."))  # plain KD: nothing defended
    assert plain.teacher.label_smoothing == 0.0 and plain.transfer.is_identity()
    own_teacher = parse_spec({"teacher": {"weight_decay": 0.01}}, base_dir=Path("."))  # a teacher-side choice
    assert own_teacher.softlabels.labels == "hard" and own_teacher.teacher.label_smoothing == 0.0
    assert own_teacher.transfer.is_identity()
    own_rule = parse_spec({"transfer": {"select": "low_entropy", "keep_fraction": 0.5}}, base_dir=Path("."))
    assert own_rule.teacher.label_smoothing == 0.3 and own_rule.transfer.select == "low_entropy"
    sized = parse_spec({"transfer": {"size": 100}, "teacher": {"epochs": 5}}, base_dir=Path("."))  # not defenses
    assert sized.transfer.select == "far_from_private" and sized.teacher.label_smoothing == 0.3
    dp = parse_spec({"privacy": {"mechanism": "dp-sgd", "epsilon": 8.0}}, base_dir=Path("."))
    assert dp.teacher.label_smoothing == 0.0 and dp.transfer.is_identity()
    text = parse_spec({"data": {"builtin": "bbc-news"}}, base_dir=Path("."))  # token ids: no distance
    assert text.softlabels.labels == "hard" and text.transfer.is_identity() and text.teacher.label_smoothing == 0.0
