"""The audit of a model the user brings (``distillguard scan``): one target, ``"model"``.

The same attacks, metrics and per-record scores as the pipeline's audit
(:func:`~distillguard.audit.classifier_audit.attack_models`), on a model loaded by
:mod:`distillguard.models.external` or on a predictions file
(:mod:`distillguard.data.predictions`). With a training recipe (``[scan] recipe``), shadow
teachers replay ``[teacher]`` on halves of the audit pool, exactly as the pipeline's audit
trains them, so LiRA and RMIA run in full; without one only the attacks that need no
shadows run, and the report says which did not.
"""

from __future__ import annotations

import numpy as np

from distillguard.attack_names import CLASSIFIER_ATTACKS
from distillguard.audit.classifier_audit import attack_models, audit_data, label_noise_plan
from distillguard.audit.placement import Shadows, train_shadows
from distillguard.audit.reference_models import train_reference_models
from distillguard.audit.shadow_outputs import SHADOW_OUTPUTS
from distillguard.audit.shadows import AuditPool, ShadowLogits
from distillguard.audit.signals import TargetSignals
from distillguard.audit.utility import accuracy, mean_cross_entropy
from distillguard.checkpoints import CheckpointStore
from distillguard.config import SCAN_TARGET, Spec
from distillguard.config.audit import OFFLINE_REFERENCE_ATTACKS
from distillguard.data import load_members, load_role
from distillguard.data.predictions import read_predictions
from distillguard.errors import DataError
from distillguard.models.external import load_external_model

MISSING_ATTACK_NOTE = ("an attack that did not run gives no number, which means a weaker bound on the leak, never "
                       "a safer model")
_HOW_TO_RUN_THEM = {"model": "; give the training recipe ([teacher]) so shadows can calibrate LiRA and RMIA",
                    "predictions": "; scan the model itself with its training recipe ([teacher]) so shadows can "
                                   "calibrate LiRA and RMIA"}


def scan_model(spec: Spec, *, checkpoints: CheckpointStore | None = None
               ) -> tuple[dict, object, dict, dict[str, np.ndarray] | None, dict]:
    """What :func:`~distillguard.audit.classifier_audit.audit_models` returns, for ``[scan]``'s model or predictions."""
    if spec.scan.predictions is not None:
        return _scan_predictions(spec)
    seed = spec.run.seed
    schema, members = load_members(spec.data, seed=seed)
    model = load_external_model(spec.scan.model, schema)
    schema, pool, test = audit_data(spec, trained_ids=model.trained_ids, loaded=(schema, members))
    logits = model.logits(test.X)
    metrics: dict = {"utility": {SCAN_TARGET: {"test_accuracy": accuracy(logits, test.y),
                                               "test_loss": mean_cross_entropy(logits, test.y)},
                                 "n_test": int(len(test.y))},
                     "scan": _scan_record(spec, model.description, trained=model.trained_ids is not None)}
    shadows, population = None, (logits, test.y)
    if spec.audit.reference_models:
        references = train_reference_models(spec, schema, pool_X=pool.X, test_X=test.X, test_y=test.y)
        shadows = Shadows(references.membership, None, {SCAN_TARGET: references.logits})
        population = (logits[references.population], test.y[references.population])
        metrics["reference_models"] = {
            "count": spec.audit.reference_models, "recipe": "[teacher] (the default MLP when unset)",
            "trained_on": f"random halves of {len(references.trained_on)} test records (non-members, never audited)",
            "population": f"the other {len(references.population)} test records",
            "attacks": [a for a in spec.audit.attacks if a in OFFLINE_REFERENCE_ATTACKS],
            "note": "offline attacks calibrated on out-models only; a recipe unlike the model's makes them weaker, "
                    "never falsely stronger"}
    plan = label_noise_plan(spec, pool.X, test.X)
    if spec.audit.shadows:
        shadows = _shadows(spec, schema, pool, test, checkpoints, plan)
        metrics["shadows"] = {"count": spec.audit.shadows, "replay": "teacher training (the [teacher] recipe)",
                              "canaries": 0 if shadows.canaries is None else len(shadows.canaries),
                              "canary_kind": spec.audit.canary_kind if shadows.canaries is not None else None,
                              "outputs": f"audit/{SHADOW_OUTPUTS}"}
    signals = {SCAN_TARGET: TargetSignals(model.logits(pool.X), pool.y, *population)}
    return attack_models(spec, metrics, schema=schema, pool=pool, population_labels=population[1], signals=signals,
                         shadows=shadows, seed_as={SCAN_TARGET: "teacher"}, models={SCAN_TARGET: model}, plan=plan)


def _shadows(spec: Spec, schema, pool: AuditPool, test, checkpoints, plan) -> Shadows:
    """Shadow teachers only (the scanned model is the teacher), keyed by the scan's target; the run's canaries."""
    shadows = train_shadows(spec, schema=schema, pool=pool, transfer_X=pool.X[:0], population_X=test.X,
                            population_y=test.y, checkpoints=checkpoints, teachers_only=True,
                            extra_sets=plan.shadow_sets(pool.X) if plan is not None else None)
    return Shadows(shadows.membership, shadows.canaries, {SCAN_TARGET: shadows.logits["teacher"]})


def _scan_predictions(spec: Spec) -> tuple:
    """The attacks on a predictions file: features and labels from [data], outputs from the file."""
    seed = spec.run.seed
    schema, members = load_members(spec.data, seed=seed)
    splits = {"members": members, "nonmembers": load_role(spec.data, "nonmembers", schema=schema, seed=seed)}
    predictions = read_predictions(spec.scan.predictions, schema.classes)
    X, y = [], []
    for example_id in predictions.example_ids:
        role, row = example_id.split(":", 1)
        index = np.flatnonzero(splits[role].ids == int(row))
        if not len(index):
            raise DataError(f"{spec.scan.predictions}: example_id {example_id}: [data].{role} has no row {row} "
                            f"({len(splits[role])} rows, numbered from 0)")
        X.append(splits[role].X[index[0]])
        y.append(splits[role].y[index[0]])
    pool = AuditPool(np.stack(X), np.asarray(y, dtype=np.int64), predictions.is_member, predictions.example_ids)
    metrics: dict = {"utility": {SCAN_TARGET: {"test_accuracy": None, "test_loss": None,
                                               "note": "a predictions file has no test-set outputs"},
                                 "n_test": 0},
                     "scan": _scan_record(spec, "predictions file", trained=False)}
    shadows = None
    if spec.audit.reference_models:  # offline LiRA only: the file has no test-set outputs for RMIA's population
        test = load_role(spec.data, "test", schema=schema, seed=seed)
        references = train_reference_models(spec, schema, pool_X=pool.X, test_X=test.X, test_y=test.y)
        logits = ShadowLogits(references.logits.pool, None, references.logits.canaries)
        shadows = Shadows(references.membership, None, {SCAN_TARGET: logits})
        metrics["reference_models"] = {
            "count": spec.audit.reference_models, "recipe": "[teacher] (the default MLP when unset)",
            "trained_on": f"random halves of {len(references.trained_on)} test records (non-members, never audited)",
            "attacks": [a for a in spec.audit.attacks if a in OFFLINE_REFERENCE_ATTACKS]}
    signals = {SCAN_TARGET: TargetSignals(predictions.logits, pool.y)}
    return attack_models(spec, metrics, schema=schema, pool=pool, population_labels=None, signals=signals,
                         shadows=shadows, seed_as={SCAN_TARGET: "teacher"})


def _scan_record(spec: Spec, description: str, *, trained: bool) -> dict:
    """What was scanned and which attacks ran (the report's ``scan`` section; no record values)."""
    ran = list(spec.audit.attacks)
    return {"source": description, "recipe": spec.scan.recipe, "shadows": spec.audit.shadows,
            "members": "the members the model's split.json lists as trained" if trained else "every [data] member",
            "attacks_run": ran, "attacks_not_run": [a for a in CLASSIFIER_ATTACKS if a not in ran],
            "note": (MISSING_ATTACK_NOTE + _HOW_TO_RUN_THEM["predictions" if spec.scan.predictions else "model"]
                     if any(a not in ran for a in CLASSIFIER_ATTACKS) else None)}
