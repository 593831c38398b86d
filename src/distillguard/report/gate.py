"""The release gate: thresholds from the spec, read against the report's numbers."""

from __future__ import annotations

from typing import Any

from distillguard.config import GateConfig
from distillguard.report.canaries import canary_table


# A variant of an attack that the audit runs beside it when it can, and that the gate reads
# too: the LM reference attack with the private release's public model as the reference
# (lm/probes/audit.py), the sharper one wherever the student started from that model.
SHARPER: dict[str, tuple[str, ...]] = {"reference": ("public_reference",)}


def _worst(values: list[float | None]) -> float | None:
    """The largest of the attacks' values; None (fails closed) if any is missing or none ran."""
    if not values or any(v is None for v in values):
        return None
    return max(values)


def _check(name: str, value: float | None, threshold: float) -> dict[str, Any]:
    passed = value is not None and value <= threshold
    check = {"name": name, "value": value, "threshold": threshold, "passed": passed}
    if value is None:
        check["note"] = "not measured (too few records, or the attack was not run): fails closed"
    return check


def evaluate_gate(report: dict[str, Any], gate: GateConfig) -> dict[str, Any]:
    """Every configured check on the chosen attack/target/population; passes only if all do.

    Where the audit also ran a sharper variant of the chosen attack (:data:`SHARPER`), each
    membership check reads the worse of the two.
    The AUC check reads the upper end of the confidence interval, so a small audit cannot
    pass by luck; a number that could not be measured fails the check.
    """
    def result(name: str) -> dict[str, Any] | None:
        return next((a for a in report.get("attacks", []) if a["attack"] == name and a["target"] == gate.target
                     and a["population"] == gate.population), None)

    chosen = result(gate.attack)
    sharper = [r for r in map(result, SHARPER.get(gate.attack, ())) if r is not None]
    results = [chosen, *sharper] if chosen is not None else []  # the chosen attack missing: fails closed
    where = f"{'|'.join([gate.attack, *(r['attack'] for r in sharper)])}/{gate.target}/{gate.population}"
    checks = []
    if gate.max_auc is not None:
        value = _worst([r["auc_ci"][1] if r.get("auc_ci") else r["auc"] for r in results])
        checks.append(_check(f"auc_upper[{where}]", value, gate.max_auc))
    for fpr, threshold in gate.max_tpr_at_fpr.items():
        value = _worst([r["tpr_at_fpr"].get(fpr) for r in results])
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
