"""The deploy bundle's model card: aggregate numbers only, never a record or a secret."""

from __future__ import annotations

from typing import Any


VERDICT_WORDS = {"pass": "PASSED", "fail": "FAILED", "inconclusive": "INCONCLUSIVE"}


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if pct else f"{value:.3f}"


_FULL_PROBABILITIES = {"output": "probabilities", "top_k": None, "decimals": None}


def describe_release(release: dict[str, Any]) -> str:
    """One sentence: what a query to the served model returns."""
    digits = "" if release.get("decimals") is None else f", rounded to {release['decimals']} decimals"
    if release["output"] == "label":
        return "the predicted class only"
    if release["output"] == "top_k":
        return f"the {release['top_k']} most likely classes with their probabilities{digits}"
    return f"one probability per class{digits}"


def _front_matter(report: dict[str, Any]) -> list[str]:
    """Hugging Face model-card metadata (YAML), with the audit's headline as model-index results."""
    u = report["utility"]
    lines = ["---", "library_name: distillguard", "pipeline_tag: tabular-classification",
             "tags: [knowledge-distillation, privacy, membership-inference-audit]"]
    acc = u["student"].get("test_accuracy")
    if acc is not None:
        lines += ["model-index:", f"- name: {report['run']['name']}", "  results:",
                  "  - task: {type: tabular-classification}", "    metrics:",
                  f"    - {{type: accuracy, name: test accuracy, value: {acc:.4f}}}"]
    return lines + ["---", ""]


def _isolation_lines(report: dict[str, Any]) -> list[str]:
    """What the student learned from: public transfer data, or (self-distillation) the members' inputs."""
    transfer_set = report.get("transfer_set")
    if transfer_set and transfer_set.get("source") == "synthetic":  # [transfer.synthetic]
        return [f"This model was trained by knowledge distillation (distillguard) on {transfer_set['rows']} DP "
                f"synthetic rows ({transfer_set['mechanism']}, ε = {transfer_set['epsilon']:.2f}, δ = "
                f"{transfer_set['delta']:g}) generated from the sensitive records, labelled by a teacher;",
                "it never saw a sensitive record itself. The ε covers the generator only, not the teacher's labels."]
    if transfer_set:
        return [f"This model was trained by knowledge distillation (distillguard, {transfer_set['mechanism']}): "
                f"its transfer set was {transfer_set['source']}.", transfer_set["isolation"]]
    return ["This model was trained by knowledge distillation (distillguard): it learned only from a teacher's",
            "soft predictions on non-sensitive transfer data and never saw the sensitive training records."]


def render_model_card(report: dict[str, Any], *, release: dict[str, Any] | None = None) -> str:
    """Hugging Face-style README for deploy/: intended use, the audit's numbers, the release policy.

    Aggregate numbers only: never a record or a secret.
    """
    u, gate = report["utility"], report["gate"]
    release = release or _FULL_PROBABILITIES
    lines = _front_matter(report) + [
        f"# {report['run']['name']}: distilled student model",
        "",
        "## Model details",
        "",
        *_isolation_lines(report),
        "The teacher is not part of this bundle.",
        "",
        "## Intended use",
        "",
        "Answering queries on records of the same kind as the training data, through `distillguard serve`",
        "(which enforces the release policy and a per-client query budget) or `distillguard.load_bundle`.",
        "Out of scope: releasing outputs finer than the release policy below, unlimited queries per client,",
        "and any use whose privacy risk exceeds what the audit below measured.",
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
    ]
    fprs = [(k, h) for k, h in (("0.01", "TPR @ FPR ≤ 1%"), ("0.001", "TPR @ FPR ≤ 0.1%"))
            if any(a["tpr_at_fpr"].get(k) is not None for a in report["attacks"])]  # drop all-n/a columns
    lines += ["| attack | target | population | AUC | AUC interval |" + "".join(f" {h} |" for _, h in fprs),
              "|---|---|---|---|---|" + "---|" * len(fprs)]
    for a in report["attacks"]:
        ci = f"{a['auc_ci'][0]:.3f}–{a['auc_ci'][1]:.3f}" if a.get("auc_ci") else "n/a"
        lines.append(f"| {a['attack']} | {a['target']} | {a['population']} | {_fmt(a['auc'])} | {ci} |"
                     + "".join(f" {_fmt(a['tpr_at_fpr'].get(k), True)} |" for k, _ in fprs))
    lines += [
        "",
        f"Privacy mechanism: {report['privacy']['mechanism']}"
        + (f" (ε = {report['privacy']['epsilon']:.3g}, δ = {report['privacy']['delta']:.3g})."
           if report["privacy"].get("epsilon") is not None else "."),
        "",
    ]
    lines += gate_lines(gate)
    lines += ["", "## Release policy", "",
              f"The audit scored the student's full-precision probabilities. A query returns {describe_release(release)}",
              f"(`output = \"{release['output']}\"`); `distillguard serve` releases nothing finer.", ""]
    lines += ["## Use", "", "```python", "import distillguard",
              "bundle = distillguard.load_bundle(\"path/to/deploy\")",
              "probabilities = bundle.predict_proba(X)  # raw feature rows, columns as in feature_names_", "```", "",
              "or serve it: `distillguard serve path/to/deploy --port 8000`.", ""]
    return "\n".join(lines)


def gate_lines(gate: dict[str, Any]) -> list[str]:
    """The card's gate section: verdict, checks, why it is inconclusive, and the next steps."""
    verdict = gate.get("verdict", "pass" if gate["passed"] else "fail")
    lines = [f"## Release gate: {VERDICT_WORDS[verdict]}", ""]
    lines += [f"- {c['name']}: {_fmt(c['value'])} (max {_fmt(c['threshold'])}) {'pass' if c['passed'] else 'FAIL'}"
              for c in gate["checks"]]
    if gate.get("reasons"):
        lines += ["", "The audit could not decide the gate:", ""] + [f"- {r}" for r in gate["reasons"]]
        lines += ["", "What would make it conclusive:", ""] + [f"- {f}" for f in gate.get("to_conclude", [])]
    if gate.get("note"):
        lines += ["", f"Note: {gate['note']}."]
    if gate.get("next_steps"):
        lines += ["", "### Next steps", ""]
        lines += [f"- {step['what']}: `{step['command']}`" for step in gate["next_steps"]]
    return lines


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


def _lm_transfer_lines(transfer_set: dict[str, Any] | None) -> list[str]:
    if not transfer_set or transfer_set.get("mechanism") != "dp-lm":
        return []
    return ["", f"Its transfer text was {transfer_set['rows']} DP synthetic documents sampled from a generator "
                f"trained with DP-SGD on the sensitive documents (ε = {transfer_set['epsilon']:.2f}, δ = "
                f"{transfer_set['delta']:g}); the ε covers the generator only, not the teacher's labels."]


def render_lm_model_card(report: dict[str, Any]) -> str:
    """Markdown README for a language model's deploy/: aggregate numbers only, never a secret or PII value."""
    u, gate = report["utility"], report["gate"]
    lines = [
        f"# {report['run']['name']}: distilled student language model",
        "",
        "A causal language model trained by knowledge distillation (distillguard): it learned only from a",
        "teacher's top-k next-token distributions on public transfer text and never saw the sensitive",
        "training documents. The teacher is not part of this folder.",
        *_lm_transfer_lines(report.get("transfer_set")),
        "",
        "## Utility (held-out text of the private distribution)",
        "",
        "| model | test perplexity |",
        "|---|---|",
        f"| teacher (not shipped) | {_fmt(u['teacher'].get('test_perplexity'))} |",
        f"| this student | {_fmt(u['student'].get('test_perplexity'))} |",
        *([f"| public model (transfer text only; this student's start) | "
           f"{_fmt(u['public_model'].get('test_perplexity'))} |"] if u.get("public_model") else []),
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
    lines += [""] + gate_lines(gate)
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
              'model = AutoModelForCausalLM.from_pretrained("path/to/deploy")',
              'tokenizer = AutoTokenizer.from_pretrained("path/to/deploy")', "```", ""]
    return "\n".join(lines)
