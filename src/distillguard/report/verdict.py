"""The gate's verdict with the audit's power: pass, fail, or inconclusive, and what to do next.

The gate's checks (:mod:`distillguard.report.gate`) compare numbers with thresholds. A
number can pass because nothing leaks, or because the audit could not have seen a leak:
too few nonmembers to resolve the gate's false-positive rate, an AUC interval so wide it
straddles the threshold, or attacks that do not even find the canaries planted in the
shadow teachers (the positive control). Such a run gets the verdict ``inconclusive``,
with the reasons and what would make it conclusive; never a plain pass or fail.

A failure backed by evidence stays a failure whatever the power: an AUC interval wholly
above the threshold, a TPR above its bar at a resolvable FPR, an accuracy gap, a probe.
"""

from __future__ import annotations

import math
from typing import Any

from distillguard.config import GateConfig
from distillguard.report.gate import SHARPER, evaluate_gate

#: A TPR at FPR ≤ f is read from at least this many false positives: n_nonmembers · f ≥ 5.
MIN_FALSE_POSITIVES = 5
#: An AUC interval wider than this that straddles ``max_auc`` cannot decide the check.
MAX_AUC_INTERVAL = 0.10
#: Exit code of ``distillguard gate`` for an inconclusive verdict (0 pass, 1 fail, 2 bad input).
INCONCLUSIVE_EXIT = 3


def gate_verdict(report: dict[str, Any], gate: GateConfig, *, spec_path: str | None = None,
                 hard_labels: bool = False, defended: bool = False) -> dict[str, Any]:
    """:func:`evaluate_gate` plus ``verdict``, ``power``, the reasons and the next steps.

    ``passed`` is true only for the verdict ``"pass"``. ``spec_path`` (the run's resolved
    spec) goes into the next-step commands of a failed or inconclusive verdict;
    ``hard_labels``: the student already learned from hard labels, so that step is not offered;
    ``defended``: the whole defended default (hard labels, a label-smoothed teacher, far-from-private
    transfer) is in place, so the next step is a stronger teacher-side defense.
    """
    result = evaluate_gate(report, gate)
    attack = _gate_result(report, result)
    power = audit_power(report, gate, attack)
    checks = result["checks"]
    rows = [attack, *_sharper_rows(report, result)]
    conclusive_fail = [c["name"] for c in checks if not c["passed"]
                       and any(_evidence_of_failure(c, gate, row, power) for row in _failing_rows(c, rows))]
    if conclusive_fail:
        verdict = "fail"
    elif power["problems"]:
        verdict = "inconclusive"
    else:
        verdict = "pass" if all(c["passed"] for c in checks) else "fail"
    result.update(verdict=verdict, passed=verdict == "pass", power=power)
    if verdict == "inconclusive":
        result["reasons"] = [p["reason"] for p in power["problems"]]
        result["to_conclude"] = [p["fix"] for p in power["problems"]]
    if verdict == "pass" and _teacher_at_chance(report, gate, attack):
        result["note"] = ("the teacher does not leak measurably either (its interval is within the gate's bar): "
                          "distillation was not needed for privacy on these data")
    if verdict != "pass":
        result["next_steps"] = next_steps(report, spec_path=spec_path, verdict=verdict, hard_labels=hard_labels,
                                          defended=defended)
    return result


def _gate_result(report: dict[str, Any], result: dict[str, Any], name: str | None = None) -> dict[str, Any] | None:
    return next((a for a in report.get("attacks", []) if a["attack"] == (name or result["attack"])
                 and a["target"] == result["target"] and a["population"] == result["population"]), None)


def _sharper_rows(report: dict[str, Any], result: dict[str, Any]) -> list[dict[str, Any]]:
    """The sharper variants of the chosen attack that the gate also read (:data:`~distillguard.report.gate.SHARPER`)."""
    return [r for name in SHARPER.get(result["attack"], ()) if (r := _gate_result(report, result, name)) is not None]


def _failing_rows(check: dict[str, Any], rows: list[dict[str, Any] | None]) -> list[dict[str, Any] | None]:
    """The attack rows behind a failed check: for the AUC check, those whose own interval ends above the bar (the
    chosen attack's and its sharper variants'); for the others, the chosen attack's."""
    if not check["name"].startswith("auc_upper["):
        return rows[:1]
    return [r for r in rows if r is None or not r.get("auc_ci") or r["auc_ci"][1] > check["threshold"]]


def audit_power(report: dict[str, Any], gate: GateConfig, attack: dict[str, Any] | None) -> dict[str, Any]:
    """What the audit could have detected: resolvable FPR, interval width, positive control.

    Returns ``{"n_members", "n_nonmembers", "min_fpr", "auc_interval_width",
    "positive_control", "problems"}``; each problem is ``{"kind": "pool" | "interval" |
    "control", "reason", "fix"}``, and there is none when the audit had the power to
    decide the gate's checks.
    """
    n_in = None if attack is None else attack.get("n_members")
    n_out = None if attack is None else attack.get("n_nonmembers")
    ci = None if attack is None else attack.get("auc_ci")
    width = None if not ci else float(ci[1] - ci[0])
    problems: list[dict[str, str]] = []
    if n_out:
        for key in gate.max_tpr_at_fpr:
            fpr = float(key)
            if fpr > 0 and n_out * fpr < MIN_FALSE_POSITIVES:
                need = math.ceil(MIN_FALSE_POSITIVES / fpr)
                problems.append(_problem(
                    "pool", f"{n_out} nonmembers resolve FPR down to 1/{n_out} = {1 / n_out:.4f}: TPR at FPR ≤ {key} "
                            f"rests on {n_out * fpr:.2f} false positives (needs ≥ {MIN_FALSE_POSITIVES})",
                    f"at least {need} audited nonmembers (and as many trained members) for the "
                    f"max_tpr_at_fpr check at {key}"))
    if gate.max_auc is not None and width is not None and width > MAX_AUC_INTERVAL and ci[0] <= gate.max_auc < ci[1]:
        problems.append(_problem(
            "interval", f"the AUC interval {ci[0]:.3f}–{ci[1]:.3f} is {width:.3f} wide (over {MAX_AUC_INTERVAL}) and "
                        f"straddles max_auc = {gate.max_auc}",
            f"more records: the interval narrows as 1/√n; about {_records_for_width(n_in, n_out, width)} "
            f"members and as many nonmembers would bring it under {MAX_AUC_INTERVAL}"))
    control = positive_control(report, preferred=None if attack is None else attack["attack"])
    if control is not None and not control["detected"]:
        problems.append(_problem("control", control["reason"], control["fix"]))
    return {"n_members": n_in, "n_nonmembers": n_out, "min_fpr": None if not n_out else 1 / n_out,
            "auc_interval_width": width, "positive_control": control, "problems": problems}


def _problem(kind: str, reason: str, fix: str) -> dict[str, str]:
    return {"kind": kind, "reason": reason, "fix": fix}


def _records_for_width(n_in: int | None, n_out: int | None, width: float) -> int | str:
    if not n_in or not n_out:
        return "more"
    return int(math.ceil(min(n_in, n_out) * (width / MAX_AUC_INTERVAL) ** 2))


def positive_control(report: dict[str, Any], *, preferred: str | None) -> dict[str, Any] | None:
    """Are the planted canaries detected in the shadow teachers? ``None`` for a causal-LM report.

    Detected: the lower end of the teacher's canary AUC interval is above 0.5 for the
    gate's attack (or, if that did not score canaries, the strongest that did); failing
    that, the lower end of the shipped model's (the student's) canary AUC interval, for
    teachers that hide their canaries by construction (Split-AI). Without canaries there
    is no control, and a clean result could mean blind attacks.
    """
    if report.get("model_kind") == "causal-lm":
        return None
    rows = [a for a in report.get("attacks", []) if a["target"] in ("teacher", "model") and a["population"] == "canaries"]
    if not rows:
        return {"detected": False, "attack": None, "auc": None, "auc_ci": None,
                "reason": "no positive control: no canaries were planted ([audit] shadows = 0 or canaries = 0), so "
                          "nothing shows the attacks could see a leak here",
                "fix": "[audit] shadows ≥ 8 and canaries ≥ 16, so the planted canaries show the attacks can detect "
                       "memorization"}
    row = next((a for a in rows if a["attack"] == preferred), None) or max(rows, key=_lower_end)
    lower = _lower_end(row)
    control = {"detected": lower > 0.5, "target": row["target"], "attack": row["attack"], "auc": row["auc"],
               "auc_ci": row.get("auc_ci")}
    shipped = [a for a in report.get("attacks", []) if a["target"] not in ("teacher", "model")
               and a["population"] == "canaries"]
    if not control["detected"] and shipped and _lower_end(max(shipped, key=_lower_end)) > 0.5:
        # A teacher that answers each canary only with models that never saw it (Split-AI) hides its canaries
        # by design; canaries detected through the shipped model's own shadows show the attacks are not blind.
        row = max(shipped, key=_lower_end)
        return {"detected": True, "target": row["target"], "attack": row["attack"], "auc": row["auc"],
                "auc_ci": row.get("auc_ci")}
    if not control["detected"]:
        control["reason"] = (f"positive control failed: {row['attack']} does not detect the canaries planted in the "
                             f"shadow teachers (AUC {row['auc']:.3f}, interval from {lower:.3f}): the attacks are "
                             "blind here")
        control["fix"] = ("more shadows and canaries ([audit] shadows, canaries), or a teacher recipe that can "
                          "memorize (more epochs, less regularization)")
    return control


def _lower_end(row: dict[str, Any]) -> float:
    return float(row["auc_ci"][0]) if row.get("auc_ci") else float(row["auc"])


def _evidence_of_failure(check: dict[str, Any], gate: GateConfig, attack: dict[str, Any] | None,
                         power: dict[str, Any]) -> bool:
    """A failing check that more data could not turn into a pass."""
    name, value = check["name"], check["value"]
    if name.startswith("auc_upper["):
        ci = None if attack is None else attack.get("auc_ci")
        return ci is None or ci[0] > check["threshold"] or ci[1] - ci[0] <= MAX_AUC_INTERVAL
    if name.startswith("tpr_at_fpr<="):
        if value is None:
            return attack is None  # the attack did not run: a configuration problem, not power
        fpr = float(name.removeprefix("tpr_at_fpr<=").split("[")[0])
        return (power["n_nonmembers"] or 0) * fpr >= MIN_FALSE_POSITIVES
    return True  # utility and probe checks do not depend on the pool size


def _teacher_at_chance(report: dict[str, Any], gate: GateConfig, attack: dict[str, Any] | None) -> bool:
    if attack is None or gate.max_auc is None:
        return False
    teacher = next((a for a in report.get("attacks", []) if a["attack"] == attack["attack"]
                    and a["target"] == "teacher" and a["population"] == attack["population"]), None)
    return teacher is not None and bool(teacher.get("auc_ci")) and teacher["auc_ci"][1] <= gate.max_auc


def next_steps(report: dict[str, Any], *, spec_path: str | None, verdict: str,
               hard_labels: bool = False, defended: bool = False) -> list[dict[str, str]]:
    """The closest options that may pass, each with the command to run (no record values)."""
    spec = spec_path or "SPEC"
    name = report.get("run", {}).get("name") or "run"
    if "scan" in report:
        return _scan_next_steps(spec, verdict)
    if verdict == "inconclusive":
        return [{"what": "give the audit what it lacks (more records, shadows or canaries, as listed above) in the "
                         "spec, then run it again", "command": f"distillguard run {spec}"}]
    steps = [{"what": "search the defense knobs for the least leaky student within an accuracy bar, then run the "
                      "chosen spec", "command": f"distillguard tune {spec} --out runs/{name}-tune && "
                                                f"distillguard run runs/{name}-tune/best.toml"}]
    if report.get("model_kind") != "causal-lm":
        steps += [
            _release_step(hard_labels=hard_labels, defended=defended),
            {"what": "train the teacher with DP-SGD for a formal guarantee (docs/defenses/dp-sgd.md)",
             "command": 'add [privacy] mechanism = "dp-sgd" and epsilon = 8 to the spec, then distillguard run SPEC'},
            {"what": "PATE: noisy votes of teachers on disjoint partitions (docs/defenses/pate.md)",
             "command": 'add [privacy] mechanism = "pate" to the spec, then distillguard run SPEC'},
        ]
    return steps


def _release_step(*, hard_labels: bool, defended: bool) -> dict[str, str]:
    """The next defense up from what the student already has."""
    if defended:
        return {"what": "train the teacher as Split-AI (SELENA): each transfer record is answered only by sub-teachers "
                        "that never saw its nearest members (docs/defenses/split-ai.md)",
                "command": 'add [teacher.split_ai] k = 10 and l = 3 to the spec, then distillguard run SPEC'}
    if hard_labels:
        return {"what": "smooth the teacher's labels and label only the transfer records farthest from the members, "
                        "on top of the hard labels (the defended default: docs/results/real-data.md)",
                "command": 'add [teacher] label_smoothing = 0.3 and [transfer] select = "far_from_private" and '
                           'keep_fraction = 0.7 to the spec, then distillguard run SPEC'}
    return {"what": "release hard labels only (docs/defenses/plain-kd.md)",
            "command": 'add [softlabels] labels = "hard" to the spec, then distillguard run SPEC'}


def _scan_next_steps(spec: str, verdict: str) -> list[dict[str, str]]:
    if verdict == "inconclusive":
        return [{"what": "give the scan what it lacks (more records; the training recipe in [teacher] for shadows "
                         "and canaries), then scan again", "command": f"distillguard scan {spec}"}]
    return [{"what": "train a defended student on the same data instead of shipping this model (drop [scan], keep "
                     "[data] and the recipe in [teacher]), then read its audit (docs/scan.md)",
             "command": "distillguard run SPEC"}]
