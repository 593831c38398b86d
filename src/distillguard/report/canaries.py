"""The canary table of a language-model report: each canary beside its baseline, and the worst one.

A canary's **excess** is its exposure under the target above its baseline, the exposure
the reference model (trained on the transfer text only, it never saw a canary) gives the
same canary among the same references. The gate reads the worst canary's excess: a
single leaking record is what the audit exists to catch, and a mean over canaries hides
it. Numbers and canary ids only, never a secret.
"""

from __future__ import annotations

from typing import Any

__all__ = ["canary_table"]


def canary_table(probes: list[dict[str, Any]], target: str) -> dict[str, Any] | None:
    """Per canary of ``target``: id, repetitions, exposure, baseline and excess (bits); and the worst one.

    The worst canary has the largest excess; ties go to the more repeated canary, then to
    the lower id. Returns None when the report holds no exposure probe of ``target``.
    """
    entries = sorted((p for p in probes if p.get("probe") == "exposure" and p.get("target") == target),
                     key=lambda p: p["canary_id"])
    if not entries:
        return None
    rows = [{"canary_id": p["canary_id"], "repetitions": p["repetitions"], "exposure_bits": p["exposure_bits"],
             "baseline_bits": p["baseline_bits"],
             "excess_bits": p.get("excess_bits", round(p["exposure_bits"] - p["baseline_bits"], 6)),
             "max_bits": p["max_bits"]} for p in entries]
    worst = max(rows, key=lambda r: (r["excess_bits"], r["repetitions"], -r["canary_id"]))
    return {"target": target, "worst_canary_id": worst["canary_id"], "worst_excess_bits": worst["excess_bits"],
            "canaries": rows}
