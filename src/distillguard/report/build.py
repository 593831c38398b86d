"""report.json from the audit's numbers, then report.html rendered from it.

Data first: the JSON is the product and the HTML only shows it, so both always agree.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from distillguard.config import Spec
from distillguard.report.gate import evaluate_gate
from distillguard.runs import RunDir, atomic_write_json, atomic_write_text, library_versions, read_json, sha256_file


def build_report(run: RunDir, spec: Spec) -> dict[str, Any]:
    """Assemble report.json (CONTRACT.md shape) from audit/metrics.json, manifest and spec."""
    metrics = read_json(run / "audit" / "metrics.json")
    manifest = run.load_manifest()
    teacher_stage = manifest["stages"].get("teacher", {})
    label_stage = manifest["stages"].get("label", {})  # PATE spends its budget when the ensemble votes
    utility = metrics["utility"]
    report: dict[str, Any] = {
        "schema_version": 1,
        "run": {
            "name": spec.run.name, "seed": spec.run.seed,
            "spec_sha256": sha256_file(run / "spec.toml") if (run / "spec.toml").exists() else None,
            "versions": library_versions(),
        },
        "utility": {
            "teacher": utility["teacher"], "student": utility["student"],
            "accuracy_gap": utility.get("accuracy_gap"), "agreement": utility.get("agreement"),
            "n_test": utility["n_test"],
            **{k: utility[k] for k in ("reference", "perplexity_ratio", "n_test_tokens") if k in utility},
        },
        "privacy": teacher_stage.get("privacy") or label_stage.get("privacy") or {"mechanism": spec.privacy.mechanism, "epsilon": None, "delta": None},
        "teacher": {"source": teacher_stage.get("source", "trained"),
                    "note": "loaded teacher: attacks that replay training use the recipe in [teacher]"
                    if teacher_stage.get("source") == "loaded" else None},
        "populations": metrics.get("populations", {}),
        **({"data_split": {**teacher_stage["data_split"], "note": "EVALUATION SET-UP: members, nonmembers, transfer "
                           "and test were cut from one labelled table by a seeded split; in deployment the transfer "
                           "set is public data and the members are the private training set"}}
           if teacher_stage.get("data_split") else {}),
        "shadows": metrics.get("shadows"),
        "exchangeability": metrics.get("exchangeability"),
        "attacks": metrics["attacks"],
        "probes": metrics.get("probes", []),
        "empirical_epsilon": metrics.get("empirical_epsilon"),
        "record_risk": metrics.get("record_risk"),
        "warnings": metrics.get("warnings", []),
    }
    if spec.is_lm:
        report["model_kind"] = "causal-lm"
        report["reference_model"] = metrics.get("reference_model")
        report["leak_guard"] = manifest["stages"].get("label", {}).get("leak_guard")
        report["tokenizer"] = teacher_stage.get("tokenizer")
    upper, lower = report["privacy"].get("epsilon"), (report["empirical_epsilon"] or {}).get("epsilon_lower")
    if upper is not None and lower is not None and lower > upper:
        report["warnings"].append(
            f"EMPIRICAL ε LOWER BOUND {lower:.3f} EXCEEDS THE ACCOUNTANT'S ε {upper:.3f}: a bug or a broken assumption "
            "(e.g. the shadows do not replay the DP recipe, or the canaries are not independent); do not trust this run")
    report["gate"] = evaluate_gate(report, spec.gate)
    return report


def write_report(run: RunDir, report: dict[str, Any]) -> None:
    """Write report.json and a self-contained report.html (plots inlined, no external requests)."""
    atomic_write_json(run / "report.json", report)
    atomic_write_text(run / "report.html", render_html(report, plots=_inline_plots(run / "audit")))


def _inline_plots(audit_dir: Path) -> dict[str, str]:
    return {p.stem.removeprefix("roc_"): base64.b64encode(p.read_bytes()).decode() for p in sorted(audit_dir.glob("roc_*.png"))}


def render_html(report: dict[str, Any], *, plots: dict[str, str]) -> str:
    env = Environment(loader=PackageLoader("distillguard", "report/templates"), autoescape=select_autoescape())
    env.filters["num"] = lambda v, digits=3: "n/a" if v is None else f"{v:.{digits}f}"
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    return env.get_template("report.html.j2").render(report=report, plots=plots)
