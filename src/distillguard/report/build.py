"""report.json from the audit's numbers, then report.html rendered from it.

Data first: the JSON is the product and the HTML only shows it, so both always agree.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from distillguard.config import Spec
from distillguard.report.canaries import canary_table
from distillguard.report.verdict import gate_verdict
from distillguard.runs import RunDir, atomic_write_json, atomic_write_text, library_versions, read_json, sha256_file


def build_report(run: RunDir, spec: Spec) -> dict[str, Any]:
    """Assemble report.json (CONTRACT.md shape) from audit/metrics.json, manifest and spec."""
    metrics = read_json(run / "audit" / "metrics.json")
    manifest = run.load_manifest()
    teacher_stage = manifest["stages"].get("teacher", {})
    label_stage = manifest["stages"].get("label", {})  # PATE spends its budget when the ensemble votes
    report: dict[str, Any] = {
        "schema_version": 1,
        "run": {
            "name": spec.run.name, "seed": spec.run.seed,
            "spec_sha256": sha256_file(run / "spec.toml") if (run / "spec.toml").exists() else None,
            "versions": library_versions(),
        },
        "utility": _utility(metrics["utility"], manifest["stages"].get("distill", {})),
        "privacy": teacher_stage.get("privacy") or label_stage.get("privacy") or {"mechanism": spec.privacy.mechanism, "epsilon": None, "delta": None},
        "teacher": {"source": teacher_stage.get("source", "trained"),
                    "note": "loaded teacher: attacks that replay training use the recipe in [teacher]"
                    if teacher_stage.get("source") == "loaded" else None},
        "populations": metrics.get("populations", {}),
        **({"data_split": {**teacher_stage["data_split"], "note": "EVALUATION SET-UP: members, nonmembers, transfer "
                           "and test were cut from one labelled table by a seeded split; in deployment the transfer "
                           "set is public data and the members are the private training set"}}
           if teacher_stage.get("data_split") else {}),
        **({"transfer_set": label_stage["transfer_set"]} if label_stage.get("transfer_set") else {}),
        "shadows": metrics.get("shadows"),
        "exchangeability": metrics.get("exchangeability"),
        "attacks": metrics["attacks"],
        "probes": metrics.get("probes", []),
        "empirical_epsilon": metrics.get("empirical_epsilon"),
        "canary_protocol": metrics.get("canary_protocol"),
        "record_risk": metrics.get("record_risk"),
        "warnings": metrics.get("warnings", []),
    }
    if spec.scan is not None:
        _as_scan(report, metrics)
    if spec.is_lm:
        report["model_kind"] = "causal-lm"
        report["reference_model"] = metrics.get("reference_model")
        report["leak_guard"] = manifest["stages"].get("label", {}).get("leak_guard")
        report["tokenizer"] = teacher_stage.get("tokenizer")
        report["canary_exposure"] = canary_table(report["probes"], spec.gate.target)
    upper, lower = report["privacy"].get("epsilon"), (report["empirical_epsilon"] or {}).get("epsilon_lower")
    if upper is not None and lower is not None and lower > upper:
        report["warnings"].append(
            f"EMPIRICAL ε LOWER BOUND {lower:.3f} EXCEEDS THE ACCOUNTANT'S ε {upper:.3f}: a bug or a broken assumption "
            "(e.g. the shadows do not replay the DP recipe, or the canaries are not independent); do not trust this run")
    if not spec.is_lm and spec.scan is None:
        _warn_on_label_coverage(run, report["warnings"])
    # RUN stands for the run folder, so the report is the same wherever the folder is (the CLI fills it in)
    hard = not spec.is_lm and spec.softlabels.labels == "hard"
    report["gate"] = gate_verdict(report, spec.gate, spec_path="RUN/spec.toml", hard_labels=hard, defended=_defended(spec))
    report["warnings"] += [f"pool too small for the gate: {p['reason']}; {p['fix']}"
                           for p in report["gate"]["power"]["problems"] if p["kind"] == "pool"]
    return report


def _utility(utility: dict[str, Any], distill_stage: dict[str, Any]) -> dict[str, Any]:
    """report.json's ``utility``: each model's numbers, and where an LM student's weights started."""
    return {"teacher": utility.get("teacher"), "student": utility.get("student"),
            "accuracy_gap": utility.get("accuracy_gap"), "agreement": utility.get("agreement"),
            "n_test": utility["n_test"],
            **{k: utility[k] for k in ("reference", "public_model", "perplexity_ratio", "n_test_tokens") if k in utility},
            **({"student_start": distill_stage["start"]} if distill_stage.get("start") else {})}


def _defended(spec: Spec) -> bool:
    """The classifier student already has the whole defended default (or more on the teacher's side)."""
    return (not spec.is_lm and spec.softlabels.labels == "hard" and spec.teacher.label_smoothing > 0
            and spec.transfer.select == "far_from_private")


def _as_scan(report: dict[str, Any], metrics: dict[str, Any]) -> None:
    """A scan's report: one model, what was scanned, which attacks ran; no pipeline, no formal guarantee."""
    utility = metrics["utility"]
    report["utility"] = {"model": utility["model"], "n_test": utility["n_test"]}
    report["privacy"] = {"mechanism": "unknown", "epsilon": None, "delta": None,
                         "note": "a scanned model carries no accounted guarantee"}
    report["teacher"] = {"source": metrics["scan"]["source"], "note": None}
    report["scan"] = metrics["scan"]
    if metrics.get("reference_models"):
        report["reference_models"] = metrics["reference_models"]
    if metrics["scan"].get("note"):
        report["warnings"].append(f"attacks not run: {', '.join(metrics['scan']['attacks_not_run'])}: "
                                  f"{metrics['scan']['note']}")


def _warn_on_label_coverage(run: RunDir, warnings: list[str]) -> None:
    from distillguard.report.coverage import coverage_warning, label_counts

    counts = label_counts(run / "softlabels")
    if counts is not None:
        classes = read_json(run / "softlabels" / "meta.json")["schema"].get("classes") or list(range(len(counts)))
        warning = coverage_warning(counts, list(classes))
        if warning:
            warnings.append(warning)


def write_report(run: RunDir, report: dict[str, Any]) -> None:
    """Write report.json and a self-contained report.html (plots inlined, no external requests)."""
    atomic_write_json(run / "report.json", report)
    atomic_write_text(run / "report.html", render_html(report, plots=_inline_plots(run / "audit", report)))


def _inline_plots(audit_dir: Path, report: dict[str, Any]) -> dict[str, str]:
    """attack → base64 PNG, in the attack tables' order with the gate's attack first."""
    files = {p.stem.removeprefix("roc_"): p for p in audit_dir.glob("roc_*.png")}
    order = list(dict.fromkeys(a["attack"] for a in report.get("attacks", [])))
    gate = report.get("gate", {}).get("attack")
    ranked = sorted(files, key=lambda name: (name != gate, order.index(name) if name in order else len(order), name))
    return {name: base64.b64encode(files[name].read_bytes()).decode() for name in ranked}


def render_html(report: dict[str, Any], *, plots: dict[str, str]) -> str:
    env = Environment(loader=PackageLoader("distillguard", "report/templates"), autoescape=select_autoescape())
    env.filters["num"] = lambda v, digits=3: "n/a" if v is None else f"{v:.{digits}f}"
    env.filters["pct"] = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    env.filters["gate_first"] = lambda rows, gate: sorted(  # the row the gate reads, then its attack's others
        rows, key=lambda a: (a["attack"] != gate.get("attack"), a["target"] != gate.get("target")))
    env.tests["measured_in"] = lambda column, rows: any(a["tpr_at_fpr"].get(column[0]) is not None for a in rows)
    return env.get_template("report.html.j2").render(report=report, plots=plots)
