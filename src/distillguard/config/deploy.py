"""``[deploy]``: what the served student releases per query, and the server's limits.

The release policy is an output form: full ``probabilities``, the ``top_k`` classes with
their probabilities, or the ``label`` only, each optionally rounded to ``decimals``. The
audit scored a form too (today: full probabilities); a bundle may release that form or a
coarser one, never a finer one (:func:`finer_than`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from distillguard.config.base import Section

#: Output forms from finest to coarsest.
OUTPUT_FORMS = ("probabilities", "top_k", "label")
#: [deploy] keys of a classifier's release, and of a causal LM's.
CLASSIFIER_RELEASE_KEYS = ("output", "top_k", "decimals", "onnx")
LM_RELEASE_KEYS = ("decoding", "generation_top_k", "max_new_tokens")
#: The extraction probe's sampling top-k (distillguard.lm.probes.extraction).
EXTRACTION_TOP_K = 40
#: What the classifier audit scores: the student's full-precision probabilities.
AUDITED_CLASSIFIER_OUTPUT: dict[str, Any] = {"output": "probabilities", "top_k": None, "decimals": None}


class DeployConfig(Section):
    output: Literal["probabilities", "top_k", "label"] = Field(
        "probabilities", description='What a query returns: "probabilities" (one per class), "top_k" (the k most '
                                     'likely classes with their probabilities) or "label" (the class only).')
    top_k: int | None = Field(None, ge=1, description='output = "top_k": how many classes (fewer than the classes).')
    decimals: int | None = Field(
        None, ge=0, le=8, description="Round released probabilities to this many decimals; unset: full precision.")
    onnx: bool = Field(False, description="Also write the student as deploy/model.onnx (raw features in, "
                                          "probabilities out); `distillguard export --onnx` sets it for one export.")
    query_budget: int = Field(10_000, ge=1, description="Rows one client (by address) may predict per budget window "
                                                        "in `distillguard serve`; then 429.")
    budget_window_seconds: float = Field(3600.0, gt=0, description="Length of the query-budget window, in seconds.")
    max_rows: int = Field(1000, ge=1, le=100_000, description="Most rows in one /predict request; more is a 413.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest /predict body in bytes; larger is a 413.")
    decoding: Literal["sample", "greedy"] | None = Field(
        None, description='causal-lm: how /generate decodes: "sample" (temperature 1, among generation_top_k '
                          'tokens) or "greedy", each as the audit\'s probes generated; unset: "sample" when the '
                          'audit sampled, else "greedy".')
    generation_top_k: int | None = Field(
        None, ge=0, description='causal-lm, decoding = "sample": sample among the k most likely tokens, 0 for the '
                                "full distribution; must be one the audit's probes sampled with (40: the extraction "
                                "probe; 0: the PII probe). Unset: 40 when the extraction probe sampled, else 0.")
    max_new_tokens: int | None = Field(
        None, ge=1, description="causal-lm: most tokens one /generate completion may have; at most what the audit "
                                "generated with that decoding (unset: that audited maximum).")

    @model_validator(mode="after")
    def _form_fits(self) -> DeployConfig:
        if self.output == "top_k" and self.top_k is None:
            raise ValueError('output = "top_k" needs top_k (how many classes to release)')
        if self.output != "top_k" and self.top_k is not None:
            raise ValueError(f'top_k applies to output = "top_k" (got output = "{self.output}")')
        if self.output == "label" and self.decimals is not None:
            raise ValueError('decimals rounds probabilities; output = "label" releases none')
        return self

    def release_policy(self) -> dict[str, Any]:
        """The output form as the bundle records it."""
        return {"output": self.output, "top_k": self.top_k, "decimals": self.decimals}

    def serving_limits(self) -> dict[str, Any]:
        return {"query_budget": self.query_budget, "budget_window_seconds": self.budget_window_seconds,
                "max_rows": self.max_rows, "max_body_bytes": self.max_body_bytes}

    def is_default(self) -> bool:
        return self == DeployConfig()


def audited_generation(probes: Any) -> dict[str, Any]:
    """What the LM audit generated with, from its ``[audit.lm]`` probe settings.

    Greedy: the PII probe's greedy completions (``pii_tokens``) and k-extractability's
    greedy suffixes (``extractable_suffix``). Sampling at temperature 1: the PII probe's
    samples (``pii_tokens``, full distribution) and the extraction probe's (``extraction_tokens``,
    top-40). A served completion longer than the audit's, or drawn another way, was never
    measured.
    """
    greedy = max(probes.pii_tokens, probes.extractable_suffix if probes.extractable_texts else 0)
    sample_tokens, top_ks = 0, []
    if probes.pii_samples:
        sample_tokens, top_ks = probes.pii_tokens, [None]
    if probes.extraction_samples:
        sample_tokens, top_ks = max(sample_tokens, probes.extraction_tokens), [*top_ks, EXTRACTION_TOP_K]
    return {"temperature": 1.0, "greedy_max_new_tokens": greedy, "sample_max_new_tokens": sample_tokens,
            "sample_top_k": top_ks}


def generation_policy(deploy: DeployConfig, audited: dict[str, Any]) -> dict[str, Any]:
    """The bundle's decoding from ``[deploy]``; ValueError saying why when the audit did not cover it."""
    decoding = deploy.decoding or ("sample" if audited["sample_max_new_tokens"] else "greedy")
    limit = audited[f"{decoding}_max_new_tokens"]
    if not limit:
        raise ValueError(f'decoding = "{decoding}": the audit generated no {decoding} completion '
                         "(its probes are off); choose the other decoding or turn the probes on")
    tokens = deploy.max_new_tokens or limit
    if tokens > limit:
        raise ValueError(f"max_new_tokens = {tokens}: the audit generated at most {limit} tokens with "
                         f'decoding = "{decoding}"')
    top_k = None
    if decoding == "sample":
        covered = audited["sample_top_k"]  # None: the full distribution
        choice = deploy.generation_top_k
        top_k = (EXTRACTION_TOP_K if EXTRACTION_TOP_K in covered else None) if choice is None else (choice or None)
        if top_k not in covered:
            shown = " or ".join("0 (full distribution)" if k is None else str(k) for k in covered)
            raise ValueError(f"generation_top_k = {choice}: the audit sampled with top-k {shown}")
    return {"decoding": decoding, "temperature": 1.0, "top_k": top_k, "max_new_tokens": tokens}


def decoding_beyond(generation: dict[str, Any], audited: dict[str, Any]) -> str | None:
    """Why a bundle's recorded decoding goes beyond what the audit generated, or None when it does not."""
    decoding = generation.get("decoding")
    if decoding not in ("sample", "greedy"):
        return f"decoding {decoding!r} is not one of 'sample', 'greedy'"
    limit = audited.get(f"{decoding}_max_new_tokens") or 0
    if not isinstance(generation.get("max_new_tokens"), int) or not 1 <= generation["max_new_tokens"] <= limit:
        return f"max_new_tokens {generation.get('max_new_tokens')!r} is outside the audited 1..{limit} for {decoding}"
    if generation.get("temperature") != audited.get("temperature", 1.0):
        return f"temperature {generation.get('temperature')!r} differs from the audited {audited.get('temperature')}"
    if decoding == "sample" and generation.get("top_k") not in audited.get("sample_top_k", []):
        return f"top_k {generation.get('top_k')!r} is not among the audited {audited.get('sample_top_k')}"
    return None


def finer_than(release: dict[str, Any], audited: dict[str, Any]) -> str | None:
    """Why ``release`` would reveal more than the ``audited`` form, or None when it reveals no more.

    A form is at most as fine as another when its output is the same or coarser
    (probabilities > top_k > label), it keeps no more decimals and, for top_k, no more classes.
    """
    rank = {form: i for i, form in enumerate(OUTPUT_FORMS)}
    if release["output"] not in rank or audited["output"] not in rank:
        return f"unknown output form {release['output']!r} / {audited['output']!r}; expected one of {OUTPUT_FORMS}"
    if rank[release["output"]] < rank[audited["output"]]:
        return f'output "{release["output"]}" is finer than the audited "{audited["output"]}"'
    if release["output"] == "label":
        return None
    inf = float("inf")
    if (release.get("decimals") if release.get("decimals") is not None else inf) > (
            audited.get("decimals") if audited.get("decimals") is not None else inf):
        return f"decimals {release.get('decimals')} keeps more precision than the audited {audited.get('decimals')}"
    if release["output"] == "top_k" and audited["output"] == "top_k" and release["top_k"] > audited["top_k"]:
        return f"top_k {release['top_k']} releases more classes than the audited {audited['top_k']}"
    return None
