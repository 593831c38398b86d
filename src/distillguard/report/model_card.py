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


def exposure_summary(probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean exposure per (repetitions, target), with the reference baseline: aggregates only."""
    groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for p in probes:
        if p.get("probe") == "exposure":
            groups.setdefault((p["repetitions"], p["target"]), []).append(p)
    return [{"repetitions": r, "target": t, "n_canaries": len(g),
             "mean_exposure_bits": sum(p["exposure_bits"] for p in g) / len(g),
             "mean_baseline_bits": sum(p["baseline_bits"] for p in g) / len(g),
             "max_bits": max(p["max_bits"] for p in g)} for (r, t), g in sorted(groups.items())]


def render_lm_model_card(report: dict[str, Any]) -> str:
    """Markdown README for a language model's deploy/: aggregate numbers only, never a secret or PII value."""
    u, gate = report["utility"], report["gate"]
    lines = [
        f"# {report['run']['name']}: distilled student language model",
        "",
        "A causal language model trained by knowledge distillation (distillguard): it learned only from a",
        "teacher's top-k next-token distributions on public transfer text and never saw the sensitive",
        "training documents. The teacher is not part of this folder.",
        "",
        "## Utility (held-out text of the private distribution)",
        "",
        "| model | test perplexity |",
        "|---|---|",
        f"| teacher (not shipped) | {_fmt(u['teacher'].get('test_perplexity'))} |",
        f"| this student | {_fmt(u['student'].get('test_perplexity'))} |",
        "",
        "## Memorization probes",
        "",
        "Canary exposure (Carlini et al. 2019), mean per repetition count, beside a reference model trained",
        "on the public text only (its exposure is the baseline a model gets without having seen the canary).",
        "",
        "| repetitions | model | canaries | mean exposure (bits) | baseline (bits) | max measurable |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {e['repetitions']} | {e['target']} | {e['n_canaries']} | {_fmt(e['mean_exposure_bits'])} | "
              f"{_fmt(e['mean_baseline_bits'])} | {_fmt(e['max_bits'])} |" for e in exposure_summary(report["probes"])]
    worst = report.get("canary_exposure")
    if worst:
        row = next(r for r in worst["canaries"] if r["canary_id"] == worst["worst_canary_id"])
        lines += ["", f"Worst canary ({worst['target']}): {_fmt(row['exposure_bits'])} bits against a baseline of "
                      f"{_fmt(row['baseline_bits'])} ({row['repetitions']} repetitions); the release gate reads "
                      "this excess."]
    pii = [p for p in report["probes"] if p.get("probe") == "pii_completion" and p["target"] != "reference"]
    if pii:
        lines += ["", "| PII completion | exact-match rate | prompts |", "|---|---|---|"]
        lines += [f"| {p['target']} | {_fmt(p['exact_match_rate'], True)} | {p['n']} |" for p in pii]
    lines += ["", "## Membership-inference audit", "",
              "| attack | target | AUC | AUC interval | TPR @ FPR ≤ 1% |", "|---|---|---|---|---|"]
    for a in report["attacks"]:
        ci = f"{a['auc_ci'][0]:.3f}–{a['auc_ci'][1]:.3f}" if a.get("auc_ci") else "n/a"
        lines.append(f"| {a['attack']} | {a['target']} | {_fmt(a['auc'])} | {ci} | {_fmt(a['tpr_at_fpr'].get('0.01'), True)} |")
    lines += ["", f"## Release gate: {'PASSED' if gate['passed'] else 'FAILED'}", ""]
    lines += [f"- {c['name']}: {_fmt(c['value'])} (max {_fmt(c['threshold'])}) {'pass' if c['passed'] else 'FAIL'}"
              for c in gate["checks"]]
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
              'model = AutoModelForCausalLM.from_pretrained("path/to/deploy")',
              'tokenizer = AutoTokenizer.from_pretrained("path/to/deploy")', "```", ""]
    return "\n".join(lines)
