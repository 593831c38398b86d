"""``distillguard scan``: the audit stage alone, on a model (or predictions) the user brings, into audit/.

Writes the files the audit stage writes (``metrics.json``, ``scores.parquet``,
``record_risk.parquet``, ROC plots, and ``shadow_outputs.npz`` with a recipe), with one
target, ``"model"``. What is measured lives in :mod:`distillguard.audit.scan`.
"""

from __future__ import annotations

from pathlib import Path

from distillguard.audit.scan import scan_model
from distillguard.config import ROLES, Spec
from distillguard.data import data_fingerprint
from distillguard.errors import DataError
from distillguard.runs import RunDir, sha256_file, sha256_json
from distillguard.stages.audit import OUTPUT, write_audit
from distillguard.stages.common import checkpoint_store, execute_stage


def run_scan_stage(spec: Spec, run: RunDir) -> bool:
    """Scan ``[scan]``'s model or predictions; skipped when the model, data and settings are unchanged."""
    source = spec.scan.model if spec.scan.model is not None else spec.scan.predictions
    inputs = {f"data.{role}": data_fingerprint(spec.data, role) for role in ROLES}
    inputs["scan.source"] = _fingerprint(Path(source))
    params = {"audit": spec.audit.fingerprint_params(), "data": spec.data.fingerprint_params(), "seed": spec.run.seed,
              "scan": spec.section_dict("scan")}
    if spec.scan.recipe:
        params.update(teacher=spec.section_dict("teacher"), privacy=spec.section_dict("privacy"))
    checkpoints = checkpoint_store(spec, run, "scan")

    def build(folder: Path) -> dict:
        metrics = write_audit(folder, scan_model(spec, checkpoints=checkpoints), title="scanned model")
        populations = metrics["populations"]["all"]
        return {"source": metrics["scan"]["source"], "n_pool": populations["n_members"] + populations["n_nonmembers"],
                "shadows": spec.audit.shadows}

    return execute_stage(run, "scan", params=params, inputs=inputs, output=OUTPUT, build=build,
                         checkpoints=checkpoints)


def _fingerprint(path: Path) -> str:
    """sha256 of a file, or of every file of a model folder (names and contents)."""
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        return sha256_json({str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()})
    raise DataError(f"{path}: [scan] model or predictions not found")
