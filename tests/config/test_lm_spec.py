"""The spec keys of the language-model track: defaults, paths, and invalid combinations."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.config import load_spec, parse_spec, starts_from_public
from distillguard.errors import ConfigError
from distillguard.report.gate import evaluate_gate


def spec(raw: dict, base: Path = Path("/tmp")):
    return parse_spec(raw, base_dir=base)


def test_text_data_selects_the_lm_track_and_its_defaults():
    s = spec({"data": {"builtin": "pii-corpus"}})
    assert s.is_lm and s.teacher.kind == s.student.kind == "causal-lm"
    assert s.audit.shadows == 0 and set(s.audit.attacks) == {"loss", "zlib", "min_k", "min_k_pp", "reference"}
    assert s.gate.attack == "reference" and s.gate.max_accuracy_gap is None
    assert s.audit.lm.exposure_references == 2000 and s.distill.lm_loss() == "forward_kl"
    assert s.audit.lm.mia_texts == 500  # 5 false positives at 1 % FPR: the default gate's TPR check can conclude
    assert s.distill.hard_tokens == "digits" and s.teacher.epochs == 8
    # the default release has a public model, and the student is fine-tuned from it
    assert (s.student.start, s.student.epochs, s.student.lr) == ("public", 1, 3e-4)
    assert s.data.pii_corpus.pii_mentions == [4, 8, 16] and s.data.pii_corpus.transfer_in_domain == 0.75
    again = parse_spec(__import__("tomllib").loads(s.to_toml()), base_dir=Path("/tmp"))
    assert again == s  # the resolved spec reloads to the same spec


def test_jsonl_paths_are_resolved_against_the_spec(tmp_path):
    (tmp_path / "spec.toml").write_text(
        '[data]\nformat = "jsonl"\nmembers = "m.jsonl"\nnonmembers = "n.jsonl"\ntransfer = "t.jsonl"\n'
        'test = "x.jsonl"\ncanaries = "c.jsonl"\npii = "p.jsonl"\n'
        '[teacher]\ntokenizer = { path = "tok" }\n[student]\npath = "init"\n')
    s = load_spec(tmp_path / "spec.toml")
    assert s.data.canaries == tmp_path / "c.jsonl" and s.data.pii == tmp_path / "p.jsonl"
    assert s.teacher.tokenizer.path == tmp_path / "tok" and s.student.path == tmp_path / "init"


@pytest.mark.parametrize(("raw", "message"), [
    ({"data": {"builtin": "digits"}, "teacher": {"kind": "causal-lm"}}, '[teacher].kind: "causal-lm" needs text data'),
    ({"data": {"format": "csv", "members": "a.csv", "nonmembers": "b.csv", "transfer": "c.csv", "test": "d.csv"},
      "student": {"kind": "causal-lm"}}, "got 'csv'"),
    ({"data": {"builtin": "pii-corpus"}, "teacher": {"kind": "mlp"}}, '[teacher].kind: text data'),
    ({"data": {"builtin": "digits"}, "distill": {"loss": "jsd"}}, '[distill].loss: classifiers distill with "kl"'),
    ({"data": {"builtin": "pii-corpus"}, "audit": {"attacks": ["lira_online"], "shadows": 4}}, "[audit].attacks"),
    ({"data": {"builtin": "pii-corpus"}, "distill": {"loss": "cross"}}, "[distill].loss"),
    ({"data": {"builtin": "pii-corpus"}, "distill": {"hard_tokens": "names"}}, "[distill].hard_tokens"),
    ({"data": {"builtin": "pii-corpus", "pii_corpus": {"pii_mentions": [0, 4]}}}, "[data].pii_corpus.pii_mentions"),
    ({"data": {"builtin": "pii-corpus", "pii_corpus": {"transfer_in_domain": 1.5}}},
     "[data].pii_corpus.transfer_in_domain"),
    ({"data": {"builtin": "pii-corpus"}, "teacher": {"arch": {"width": 100, "heads": 3}}}, "[teacher].arch"),
    ({"data": {"builtin": "digits", "canaries": "c.jsonl"}}, "takes no files"),
    ({"data": {"builtin": "pii-corpus"}, "privacy": {"mechanism": "dp-sgd", "epsilon": 1.0}}, "[privacy].mechanism"),
    ({"data": {"builtin": "pii-corpus"}, "softlabels": {"private_prediction": {"shards": 1}}},
     "[softlabels].private_prediction.shards: Input should be greater than or equal to 2 (got 1)"),
    ({"data": {"builtin": "pii-corpus"}, "softlabels": {"private_prediction": {"epsilon": 4}}},
     "[softlabels].private_prediction.shards: Field required"),
    ({"data": {"builtin": "pii-corpus"}, "softlabels": {"private_prediction": {"shards": 4, "sample_weight": 1}}},
     "[softlabels].private_prediction.sample_weight"),
    ({"data": {"builtin": "digits"}, "softlabels": {"private_prediction": {"shards": 4}}},
     "['private_prediction'] set the causal-LM soft-label store or its private release"),
    ({"data": {"builtin": "pii-corpus"}, "transfer": {"synthetic": {"mechanism": "mst"}}},
     '[transfer.synthetic].mechanism: \'mst\' models table columns; a causal LM takes "dp-lm"'),
    ({"data": {"builtin": "digits"}, "transfer": {"synthetic": {"mechanism": "dp-lm"}}},
     '[transfer.synthetic].mechanism: "dp-lm" trains a causal-LM generator on text; a classifier takes "mst"'),
    ({"data": {"builtin": "digits"}, "transfer": {"synthetic": {"epochs": 3, "max_grad_norm": 2.0}}},
     "['epochs', 'max_grad_norm'] set the dp-lm generator; mechanism = \"mst\" takes epsilon, delta and rows only"),
    ({"data": {"builtin": "pii-corpus"}, "transfer": {"synthetic": {}},
      "softlabels": {"private_prediction": {"shards": 2}}},
     "[transfer.synthetic]: not supported with [softlabels] private_prediction"),
    ({"data": {"builtin": "pii-corpus"}, "transfer": {"synthetic": {"batch_size": 0}}},
     "[transfer].synthetic.batch_size: Input should be greater than or equal to 1 (got 0)"),
    ({"data": {"builtin": "pii-corpus"}, "transfer": {"size": 100, "synthetic": {}}},
     "[transfer]: the classifier defense knobs are not supported for causal LMs"),
    ({"data": {"builtin": "pii-corpus"}, "softlabels": {"private_prediction": False}, "student": {"start": "public"}},
     '[student].start: "public" starts from the public model of [softlabels] private_prediction'),
    ({"data": {"builtin": "pii-corpus"}, "student": {"start": "public", "arch": {"layers": 1}}},
     '[student].start: "public" needs [student].arch equal to [teacher].arch'),
    ({"data": {"builtin": "pii-corpus"}, "student": {"start": "public", "path": "init"}},
     '[student].start: "public" and [student].path both choose the first weights'),
    ({"data": {"builtin": "digits"}, "student": {"start": "scratch"}},
     "[student].start: 'scratch' chooses a causal LM student's first weights; leave it out for classifiers"),
])
def test_invalid_combinations_name_the_field(raw, message):
    with pytest.raises(ConfigError) as error:
        spec(raw)
    assert message in str(error.value), str(error.value)


def test_lm_gate_checks_read_the_probes():
    s = spec({"data": {"builtin": "pii-corpus"}, "gate": {"max_pii_exact_match": 0.1, "max_tpr_at_fpr": {},
                                                           "max_mean_exposure_bits": 4.0}})
    probes = [{"probe": "exposure", "target": "student", "canary_id": i, "repetitions": r, "exposure_bits": b,
               "baseline_bits": 1.0, "max_bits": 10.97}
              for i, (r, b) in enumerate([(16, 3.0), (16, 4.6), (4, 9.0)])]
    probes.append({"probe": "pii_completion", "target": "student", "exact_match_rate": 0.05, "n": 40})
    report = {"attacks": [{"attack": "reference", "target": "student", "population": "all", "auc": 0.5,
                           "auc_ci": [0.45, 0.55], "tpr_at_fpr": {}}],
              "probes": probes, "utility": {"perplexity_ratio": 1.2}}
    checks = {c["name"]: c for c in evaluate_gate(report, s.gate)["checks"]}
    exposure = checks["mean_exposure_bits[student, canaries x16]"]
    assert exposure["value"] == pytest.approx(3.8) and exposure["passed"]  # only the 16x canaries count
    # the default check reads the worst canary above its baseline: the 4x one, 9.0 - 1.0 = 8.0 > 4.0 bits
    worst = checks["canary_excess_bits[student, worst: canary 2]"]
    assert worst["value"] == pytest.approx(8.0) and worst["threshold"] == 4.0 and not worst["passed"]
    assert (worst["canary_id"], worst["repetitions"], worst["exposure_bits"], worst["baseline_bits"]) == (2, 4, 9.0, 1.0)
    assert checks["pii_exact_match[student]"]["passed"]
    assert not checks["perplexity_ratio[student/teacher]"]["passed"]  # 1.2 > 1.15
    assert "accuracy_gap" not in checks


def test_worst_canary_check_reads_the_excess_over_each_canarys_own_baseline():
    s = spec({"data": {"builtin": "pii-corpus"}, "gate": {"max_tpr_at_fpr": {}}})
    # canary 0 has the highest exposure, but its baseline explains it; canary 1 is 3.5 bits over its own
    probes = [{"probe": "exposure", "target": t, "canary_id": i, "repetitions": 16, "exposure_bits": b,
               "baseline_bits": base, "max_bits": 10.97}
              for t in ("teacher", "student") for i, (b, base) in enumerate([(9.0, 8.0), (5.0, 1.5), (2.0, 1.0)])]
    report = {"attacks": [], "probes": probes, "utility": {"perplexity_ratio": 1.0}}
    checks = {c["name"]: c for c in evaluate_gate(report, s.gate)["checks"]}
    worst = checks["canary_excess_bits[student, worst: canary 1]"]
    assert worst["value"] == pytest.approx(3.5) and worst["passed"]  # 3.5 <= 4.0
    unmeasured = evaluate_gate({"attacks": [], "probes": [], "utility": {"perplexity_ratio": 1.0}}, s.gate)
    check = next(c for c in unmeasured["checks"] if c["name"].startswith("canary_excess_bits"))
    assert check["value"] is None and not check["passed"]  # no canary measured: fails closed


def test_private_prediction_defaults():
    pp = spec({"data": {"builtin": "pii-corpus"}, "softlabels": {"private_prediction": {"shards": 8}}}
              ).softlabels.private_prediction
    assert (pp.shards, pp.epsilon, pp.delta, pp.query_fraction, pp.sample_weight) == (8, 8.0, None, 1.0, 0.5)


def test_lm_synthetic_transfer_defaults_to_the_dp_lm_generator():
    s = spec({"data": {"builtin": "pii-corpus"}, "transfer": {"synthetic": {"epsilon": 8, "rows": 500}}})
    synthetic = s.transfer.synthetic
    assert (synthetic.mechanism, synthetic.epsilon, synthetic.rows) == ("dp-lm", 8.0, 500)
    assert (synthetic.epochs, synthetic.batch_size, synthetic.max_grad_norm, synthetic.accountant) == (4, 64, 1.0, "prv")
    again = parse_spec(__import__("tomllib").loads(s.to_toml()), base_dir=Path("/tmp"))
    assert again == s  # the resolved spec reloads to the same spec


def test_a_causal_lm_spec_without_a_release_key_gets_private_prediction_with_few_queries():
    """The LM default release (docs/results/lm-privacy-utility.md), shown in the resolved spec."""
    s = spec({"data": {"builtin": "pii-corpus"}, "softlabels": {"logprob_bits": 8}})  # a store key is no release key
    pp = s.softlabels.private_prediction
    assert (pp.shards, pp.epsilon, pp.query_fraction, pp.sample_weight) == (8, 2.0, 0.05, 0.5)
    resolved = __import__("tomllib").loads(s.to_toml())
    assert resolved["softlabels"]["private_prediction"]["query_fraction"] == 0.05
    assert parse_spec(resolved, base_dir=Path("/tmp")) == s
    chosen = spec({"data": {"builtin": "pii-corpus"}, "softlabels": {"private_prediction": True}})
    assert chosen.softlabels.private_prediction == pp  # true: the default recipe


@pytest.mark.parametrize("softlabels", [{"private_prediction": False}, {"labels": "soft"}])
def test_plain_kd_for_a_causal_lm_is_one_setting_away(softlabels):
    s = spec({"data": {"builtin": "pii-corpus"}, "softlabels": softlabels})
    assert s.softlabels.private_prediction is None and s.softlabels.labels == "soft"
    again = parse_spec(__import__("tomllib").loads(s.to_toml()), base_dir=Path("/tmp"))
    assert again.softlabels.private_prediction is None  # the resolved spec stays plain KD when reloaded


def test_a_chosen_private_prediction_is_kept_and_classifiers_keep_their_default():
    s = spec({"data": {"builtin": "pii-corpus"}, "softlabels": {"private_prediction": {"shards": 4, "epsilon": 2}}})
    assert (s.softlabels.private_prediction.shards, s.softlabels.private_prediction.query_fraction) == (4, 1.0)
    clf = spec({"data": {"builtin": "digits"}})
    assert clf.softlabels.private_prediction is None and clf.softlabels.labels == "hard"


@pytest.mark.parametrize(("raw", "public"), [
    ({}, True),                                                  # the default release, the teacher's arch
    ({"student": {"arch": {"layers": 1}}}, False),               # a smaller student cannot take those weights
    ({"student": {"start": "scratch"}}, False),
    ({"softlabels": {"private_prediction": False}}, False),      # plain KD has no public model
    ({"teacher": {"path": "base"}}, False),                      # auto does not guess a loaded model's arch
    ({"teacher": {"path": "base"}, "student": {"start": "public"}}, True),
])
def test_the_student_starts_from_the_public_model_only_where_it_can(raw, public):
    s = spec({"data": {"builtin": "pii-corpus"}, **raw})
    assert starts_from_public(s) is public
    assert s.student.start == ("public" if public else "scratch")  # auto is resolved in the spec
    resolved = __import__("tomllib").loads(s.to_toml())
    assert resolved["student"]["start"] == s.student.start and parse_spec(resolved, base_dir=Path("/tmp")) == s


@pytest.mark.parametrize(("student", "recipe"), [
    ({}, (1, 3e-4)),                          # a public start is fine-tuned
    ({"epochs": 3}, (3, 3e-3)),               # a recipe key given: the user's recipe, the track's other default
    ({"lr": 1e-3}, (8, 1e-3)),
    ({"start": "scratch"}, (8, 3e-3)),        # trained from scratch: the track's recipe
])
def test_a_public_start_gets_a_fine_tune_recipe_unless_the_spec_sets_one(student, recipe):
    s = spec({"data": {"builtin": "pii-corpus"}, "student": student})
    assert (s.student.epochs, s.student.lr) == recipe


def test_the_audit_reference_keeps_a_from_scratch_recipe_when_the_student_is_a_fine_tune():
    """A reference trained at the fine-tune's lr 3e-4 would be a weaker reference (every canary's baseline moves)."""
    from distillguard.lm.probes.audit import _reference_recipe

    fine_tuned = spec({"data": {"builtin": "pii-corpus"}, "teacher": {"lr": 2e-3, "batch_size": 8}})
    assert fine_tuned.student.lr == 3e-4 and _reference_recipe(fine_tuned) == (2e-3, 8)
    scratch = spec({"data": {"builtin": "pii-corpus"}, "student": {"start": "scratch", "lr": 1e-3, "batch_size": 4}})
    assert _reference_recipe(scratch) == (1e-3, 4)


def test_the_lm_gate_reads_the_worse_of_the_reference_attack_and_its_public_model_variant():
    s = spec({"data": {"builtin": "pii-corpus"}})

    def row(attack, upper, tpr):
        return {"attack": attack, "target": "student", "population": "all", "auc": upper - 0.05,
                "auc_ci": [upper - 0.1, upper], "tpr_at_fpr": {"0.01": tpr}}

    def membership(attacks):
        checks = evaluate_gate({"attacks": attacks, "probes": [], "utility": {}}, s.gate)["checks"]
        return {c["name"].split("[")[0]: c for c in checks if c["name"].startswith(("auc_upper", "tpr_at_fpr"))}

    alone = membership([row("reference", 0.55, 0.02)])
    assert alone["auc_upper"]["passed"] and alone["auc_upper"]["name"] == "auc_upper[reference/student/all]"
    both = membership([row("reference", 0.55, 0.02), row("public_reference", 0.63, 0.01)])
    assert both["auc_upper"]["value"] == 0.63 and not both["auc_upper"]["passed"]
    assert both["auc_upper"]["name"] == "auc_upper[reference|public_reference/student/all]"
    assert both["tpr_at_fpr<=0.01"]["value"] == 0.02  # each check its own worst
    from distillguard.report.verdict import _failing_rows, _sharper_rows

    report = {"attacks": [row("reference", 0.55, 0.02), row("public_reference", 0.63, 0.01)]}
    result = evaluate_gate(report, s.gate)
    auc_check = next(c for c in result["checks"] if c["name"].startswith("auc_upper"))
    rows = [report["attacks"][0], *_sharper_rows(report, result)]
    assert [r["attack"] for r in _failing_rows(auc_check, rows)] == ["public_reference"]  # the verdict's evidence
    variant_only = membership([row("public_reference", 0.5, 0.0)])  # the chosen attack missing: fails closed
    assert variant_only["auc_upper"]["value"] is None and not variant_only["auc_upper"]["passed"]
