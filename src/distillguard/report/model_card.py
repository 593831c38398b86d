"""The deploy bundle's model card: aggregate numbers only, never a record or a secret."""

from __future__ import annotations

from typing import Any


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


def render_model_card(report: dict[str, Any]) -> str:
    """Markdown README for deploy/: what the model is, how it was made, what it leaks."""
    u, gate = report["utility"], report["gate"]
    lines = [
        f"# {report['run']['name']}: distilled student model",
        "",
        "This model was trained by knowledge distillation (distillguard): it learned only from a teacher's",
        "soft predictions on non-sensitive transfer data and never saw the sensitive training records.",
        "The teacher is not part of this bundle.",
        "",
        "## Utility",
        "",
        "| model | test accuracy |",
        "|---|---|",
        f"| teacher (not shipped) | {_fmt(u['teacher'].get('test_accuracy'), True)} |",
        f"| this student | {_fmt(u['student'].get('test_accuracy'), True)} |",
        "",
        "## Membership-inference audit",
        "",
        "| attack | target | population | AUC | AUC interval | TPR @ FPR ≤ 1% | TPR @ FPR ≤ 0.1% |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in report["attacks"]:
        ci = f"{a['auc_ci'][0]:.3f}–{a['auc_ci'][1]:.3f}" if a.get("auc_ci") else "n/a"
        lines.append(f"| {a['attack']} | {a['target']} | {a['population']} | {_fmt(a['auc'])} | {ci} | "
                     f"{_fmt(a['tpr_at_fpr'].get('0.01'), True)} | {_fmt(a['tpr_at_fpr'].get('0.001'), True)} |")
    lines += [
        "",
        f"Privacy mechanism: {report['privacy']['mechanism']}"
        + (f" (ε = {report['privacy']['epsilon']:.3g}, δ = {report['privacy']['delta']:.3g})."
           if report["privacy"].get("epsilon") is not None else "."),
        "",
        f"## Release gate: {'PASSED' if gate['passed'] else 'FAILED'}",
        "",
    ]
    lines += [f"- {c['name']}: {_fmt(c['value'])} (max {_fmt(c['threshold'])}) {'pass' if c['passed'] else 'FAIL'}"
              for c in gate["checks"]]
    lines += ["", "## Use", "", "```python", "import distillguard",
              "bundle = distillguard.load_bundle(\"path/to/deploy\")",
              "probabilities = bundle.predict_proba(X)  # raw feature rows, columns as in feature_names_", "```", ""]
    return "\n".join(lines)
