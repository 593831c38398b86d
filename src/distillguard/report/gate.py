"""The release gate: thresholds from the spec, read against the report's numbers."""

from __future__ import annotations

from typing import Any

from distillguard.config import GateConfig
from distillguard.report.canaries import canary_table


def _check(name: str, value: float | None, threshold: float) -> dict[str, Any]:
    passed = value is not None and value <= threshold
    check = {"name": name, "value": value, "threshold": threshold, "passed": passed}
    if value is None:
        check["note"] = "not measured (too few records, or the attack was not run): fails closed"
    return check


def evaluate_gate(report: dict[str, Any], gate: GateConfig) -> dict[str, Any]:
    """Every configured check on the chosen attack/target/population; passes only if all do.

    The AUC check reads the upper end of the confidence interval, so a small audit cannot
    pass by luck; a number that could not be measured fails the check.
    """
    result = next(
        (a for a in report.get("attacks", [])
         if a["attack"] == gate.attack and a["target"] == gate.target and a["population"] == gate.population),
        None,
    )
    where = f"{gate.attack}/{gate.target}/{gate.population}"
    checks = []
    if gate.max_auc is not None:
        value = None if result is None else (result["auc_ci"][1] if result.get("auc_ci") else result["auc"])
        checks.append(_check(f"auc_upper[{where}]", value, gate.max_auc))
    for fpr, threshold in gate.max_tpr_at_fpr.items():
        value = None if result is None else result["tpr_at_fpr"].get(fpr)
        checks.append(_check(f"tpr_at_fpr<={fpr}[{where}]", value, threshold))
    if gate.max_accuracy_gap is not None:
        checks.append(_check("accuracy_gap", report.get("utility", {}).get("accuracy_gap"), gate.max_accuracy_gap))
    checks += _lm_checks(report, gate)
    return {"passed": all(c["passed"] for c in checks), "attack": gate.attack, "target": gate.target,
            "population": gate.population, "checks": checks}


def mean_top_exposure(probes: list[dict[str, Any]], target: str) -> tuple[float | None, int | None]:
    """Mean exposure (bits) of ``target`` over the most repeated canaries, and that repetition count."""
    entries = [p for p in probes if p.get("probe") == "exposure" and p.get("target") == target]
    if not entries:
        return None, None
    top = max(p["repetitions"] for p in entries)
    values = [p["exposure_bits"] for p in entries if p["repetitions"] == top]
    return sum(values) / len(values), top


def _lm_checks(report: dict[str, Any], gate: GateConfig) -> list[dict[str, Any]]:
    """Checks on the language-model probes and utility (absent unless the spec sets them)."""
    probes, checks = report.get("probes", []), []
    if gate.max_canary_excess_bits is not None:
        checks.append(_worst_canary_check(probes, gate.target, gate.max_canary_excess_bits))
    if gate.max_mean_exposure_bits is not None:
        value, top = mean_top_exposure(probes, gate.target)
        checks.append(_check(f"mean_exposure_bits[{gate.target}, canaries x{top}]", value, gate.max_mean_exposure_bits))
    if gate.max_pii_exact_match is not None:
        entry = next((p for p in probes if p.get("probe") == "pii_completion" and p.get("target") == gate.target), None)
        checks.append(_check(f"pii_exact_match[{gate.target}]", None if entry is None else entry["exact_match_rate"],
                             gate.max_pii_exact_match))
    if gate.max_perplexity_ratio is not None:
        checks.append(_check("perplexity_ratio[student/teacher]", report.get("utility", {}).get("perplexity_ratio"),
                             gate.max_perplexity_ratio))
    return checks


def _worst_canary_check(probes: list[dict[str, Any]], target: str, threshold: float) -> dict[str, Any]:
    """The worst canary's exposure above its baseline (bits), with that canary's id and numbers."""
    table = canary_table(probes, target)
    if table is None:
        return _check(f"canary_excess_bits[{target}, worst canary]", None, threshold)
    worst = next(r for r in table["canaries"] if r["canary_id"] == table["worst_canary_id"])
    check = _check(f"canary_excess_bits[{target}, worst: canary {worst['canary_id']}]", worst["excess_bits"], threshold)
    return {**check, **{k: worst[k] for k in ("canary_id", "repetitions", "exposure_bits", "baseline_bits")}}
