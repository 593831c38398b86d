"""The gate's verdict with audit power: pass, fail or inconclusive, on constructed reports."""

from __future__ import annotations

from distillguard.config import GateConfig
from distillguard.report.model_card import render_model_card
from distillguard.report.verdict import INCONCLUSIVE_EXIT, gate_verdict


def _attack(target, population, auc, ci, *, n=540, tpr=0.01, attack="lira_online"):
    return {"attack": attack, "target": target, "population": population, "auc": auc, "auc_ci": list(ci),
            "balanced_accuracy": 0.5, "tpr_at_fpr": {"0.01": tpr, "0.001": None, "0": 0.0},
            "n_members": n, "n_nonmembers": n}


def _report(*, n=540, student=(0.52, (0.49, 0.55)), teacher=(0.53, (0.50, 0.56)), control=(0.99, (0.98, 1.0)),
            tpr=0.01, gap=0.01):
    attacks = [_attack("student", "all", student[0], student[1], n=n, tpr=tpr),
               _attack("teacher", "all", teacher[0], teacher[1], n=n, tpr=tpr)]
    if control is not None:
        attacks.append(_attack("teacher", "canaries", control[0], control[1], n=256))
    return {"run": {"name": "small"}, "utility": {"accuracy_gap": gap}, "attacks": attacks, "probes": []}


GATE = GateConfig(attack="lira_online")  # on the student; AUC upper ≤ 0.60, TPR@1% ≤ 5%, gap ≤ 5 points


def test_large_pool_working_control_student_at_chance_is_a_real_pass():
    verdict = gate_verdict(_report(), GATE)
    assert verdict["verdict"] == "pass" and verdict["passed"]
    assert verdict["power"]["min_fpr"] == 1 / 540 and verdict["power"]["positive_control"]["detected"]
    assert "distillation was not needed" in verdict["note"]  # the teacher is at chance too
    assert "next_steps" not in verdict


def test_a_leaky_teacher_gives_no_not_needed_note():
    verdict = gate_verdict(_report(teacher=(0.9, (0.88, 0.92))), GATE)
    assert verdict["verdict"] == "pass" and "note" not in verdict


def test_small_pool_is_inconclusive_with_reason_and_fix():
    verdict = gate_verdict(_report(n=45, student=(0.55, (0.42, 0.67))), GATE)
    assert verdict["verdict"] == "inconclusive" and not verdict["passed"]
    reasons = " ".join(verdict["reasons"])
    assert "45 nonmembers resolve FPR down to 1/45" in reasons and "0.45 false positives" in reasons
    assert "straddles max_auc = 0.6" in reasons
    assert any("at least 500 audited nonmembers" in f for f in verdict["to_conclude"])
    assert verdict["next_steps"][0]["command"].startswith("distillguard run")
    assert INCONCLUSIVE_EXIT == 3


def test_135_nonmembers_cannot_resolve_one_percent():
    """The issue's case: 1.35 false positives at 1 % FPR decide nothing, even with a narrow AUC."""
    verdict = gate_verdict(_report(n=135), GATE)
    assert verdict["verdict"] == "inconclusive"
    assert any("1.35 false positives" in r for r in verdict["reasons"])


def test_blind_attacks_fail_the_positive_control():
    verdict = gate_verdict(_report(control=(0.51, (0.45, 0.57))), GATE)
    assert verdict["verdict"] == "inconclusive"
    assert "positive control failed" in verdict["reasons"][0] and "blind" in verdict["reasons"][0]


def test_no_canaries_is_no_positive_control():
    verdict = gate_verdict(_report(control=None), GATE)
    assert verdict["verdict"] == "inconclusive" and "no positive control" in verdict["reasons"][0]


def test_clear_leak_fails_even_on_a_small_pool_with_next_steps():
    """An interval wholly above the bar is evidence: more data cannot make it pass."""
    verdict = gate_verdict(_report(n=45, student=(0.85, (0.75, 0.93))), GATE, spec_path="runs/small/spec.toml")
    assert verdict["verdict"] == "fail" and "reasons" not in verdict
    commands = [s["command"] for s in verdict["next_steps"]]
    assert commands[0] == ("distillguard tune runs/small/spec.toml --out runs/small-tune && "
                           "distillguard run runs/small-tune/best.toml")
    assert any('[softlabels] labels = "hard"' in c for c in commands)
    assert any('mechanism = "dp-sgd"' in c for c in commands)
    # a student that already learned from hard labels (the default) is offered the next step instead
    hard = gate_verdict(_report(n=45, student=(0.85, (0.75, 0.93))), GATE, hard_labels=True)
    hard_commands = [s["command"] for s in hard["next_steps"]]
    assert not any("labels =" in c for c in hard_commands) and any("far_from_private" in c for c in hard_commands)
    # the whole defended default in place: the next step is a teacher-side defense, not a knob it already has
    defended = gate_verdict(_report(n=45, student=(0.85, (0.75, 0.93))), GATE, hard_labels=True, defended=True)
    defended_commands = [s["command"] for s in defended["next_steps"]]
    assert not any("labels =" in c or "far_from_private" in c for c in defended_commands)
    assert any("[teacher.split_ai]" in c for c in defended_commands)


def test_narrow_interval_over_the_bar_fails():
    verdict = gate_verdict(_report(student=(0.60, (0.57, 0.63))), GATE)
    assert verdict["verdict"] == "fail"


def test_resolvable_tpr_over_the_bar_fails():
    verdict = gate_verdict(_report(tpr=0.2), GATE)
    assert verdict["verdict"] == "fail"


def test_model_card_shows_verdict_reasons_and_next_steps():
    report = _report(n=45, student=(0.55, (0.42, 0.67)))
    report["utility"] = {"teacher": {"test_accuracy": 0.9}, "student": {"test_accuracy": 0.88}, "accuracy_gap": 0.02}
    report["privacy"] = {"mechanism": "none", "epsilon": None}
    report["gate"] = gate_verdict(report, GATE, spec_path="runs/small/spec.toml")
    card = render_model_card(report)
    assert "## Release gate: INCONCLUSIVE" in card and "1/45" in card and "distillguard run runs/small/spec.toml" in card
    assert "TPR @ FPR ≤ 1%" in card and "0.1%" not in card  # n/a in every row: the column is dropped
    report["attacks"][0].update(auc=0.85, auc_ci=[0.75, 0.93])
    report["gate"] = gate_verdict(report, GATE, spec_path="runs/small/spec.toml")
    card = render_model_card(report)
    assert "## Release gate: FAILED" in card and "### Next steps" in card and "distillguard tune runs/small/spec.toml" in card


def test_a_working_control_carries_no_failure_text():
    control = gate_verdict(_report(), GATE)["power"]["positive_control"]
    assert control["detected"] and control["attack"] == "lira_online" and "reason" not in control


def test_the_demo_pool_reaches_a_real_verdict():
    """The demo audits 540 members and 540 nonmembers (5.4 false positives at 1 % FPR): its numbers
    (README: student LiRA AUC 0.840, canaries detected in the teacher at AUC 1.0) give a real FAIL."""
    report = _report(n=540, student=(0.840, (0.815, 0.864)), control=(1.0, (1.0, 1.0)), tpr=0.096)
    verdict = gate_verdict(report, GATE)
    assert verdict["verdict"] == "fail" and not verdict["power"]["problems"]


def test_a_teacher_that_hides_its_canaries_is_controlled_by_the_students():
    """Split-AI answers each canary with sub-teachers that never saw it: the teacher-side
    control fails by design, and the student's detected canaries show the attacks see."""
    report = _report(control=(0.46, (0.40, 0.52)))
    assert gate_verdict(report, GATE)["verdict"] == "inconclusive"  # the teacher's canaries alone: blind
    report["attacks"].append(_attack("student", "canaries", 0.67, (0.56, 0.77), n=256))
    verdict = gate_verdict(report, GATE)
    control = verdict["power"]["positive_control"]
    assert verdict["verdict"] == "pass" and control["detected"] and control["target"] == "student"
    report["attacks"][-1] = _attack("student", "canaries", 0.52, (0.45, 0.59), n=256)  # neither detects: blind
    assert gate_verdict(report, GATE)["verdict"] == "inconclusive"
