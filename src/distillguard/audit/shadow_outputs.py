"""The shadow pipelines' outputs, kept so that anyone can recompute an attack without retraining.

``audit/shadow_outputs.npz`` (one NumPy ``.npz``, no pickled objects: read it with
``np.load(path, allow_pickle=False)``) holds, with S shadows, n audited records, m
population records, K canaries and C classes:

=================================== =========== =====================================================
key                                 shape       what
=================================== =========== =====================================================
``pool_example_ids``                (n,) str    the audited records, as in ``scores.parquet``
``pool_labels``                     (n,) int    their classes
``pool_is_member``                  (n,) bool   membership in the REAL teacher (the audit's answer key)
``shadow_membership``               (S, n) bool record j in shadow s's training half (the reference
                                                code's ``keep``)
``{target}_shadow_pool_logits``     (S, n, C)   shadow ``target`` (teacher/student) on the pool
``{target}_pool_logits``            (n, C)      the real ``target`` on the pool
``population_labels``               (m,) int    the population (test) records' classes
``{target}_shadow_population_logits`` (S, m, C) shadows on the population (RMIA's z)
``{target}_population_logits``      (m, C)      the real ``target`` on the population
``{target}_shadow_recipe``          () str      the recipe of the ``{target}`` shadows above: "replay" or
                                                "plain" (``[audit] shadow_recipe``; "auto" keeps the chosen one)
``canary_labels``                   (K,) int    the canaries' (random) labels; absent without canaries
``canary_included``                 (S, K) bool canary k planted in shadow s
``{target}_shadow_canary_logits``   (S, K, C)   shadows on the canaries
``label_noise_selection``           (r,) int    with label_noise: the pool records (row numbers) the
                                                shadows scored to choose σ (audit/label_only.py)
``label_noise_sigmas``              (G,) float  the σ candidates
``{target}_shadow_label_noise_      (S, G, N, r) each shadow's predicted class on each noisy copy
predictions``                       int         (σ, copy, record); its class on the record itself is
                                                the arg-max of ``{target}_shadow_pool_logits``
=================================== =========== =====================================================

It reveals who was a member of the real teacher, so it lives beside ``scores.parquet``
in the owner-only ``audit/`` folder, is never exported, and ``--destroy-teacher`` deletes it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from distillguard.audit.label_only import SHADOW_SET, SIGMAS, NoisePlan, predicted_labels
from distillguard.audit.placement import Shadows
from distillguard.audit.signals import TargetSignals

SHADOW_OUTPUTS = "shadow_outputs.npz"


def shadow_arrays(*, pool_ids: list[str], pool_labels: np.ndarray, pool_is_member: np.ndarray,
                  population_labels: np.ndarray | None, shadows: Shadows,
                  targets: dict[str, TargetSignals], label_noise: NoisePlan | None = None) -> dict[str, np.ndarray]:
    """The arrays of :data:`SHADOW_OUTPUTS` (layout in the module docstring); ``label_noise``: its plan, if it ran."""
    out = {"pool_example_ids": np.asarray(pool_ids, dtype=str), "pool_labels": np.asarray(pool_labels, np.int64),
           "pool_is_member": np.asarray(pool_is_member, bool), "shadow_membership": np.asarray(shadows.membership, bool)}
    if population_labels is not None:  # a scanned predictions file has no population
        out["population_labels"] = np.asarray(population_labels, np.int64)
    for target, logits in shadows.logits.items():
        out[f"{target}_shadow_pool_logits"] = logits.pool
        if logits.population is not None:
            out[f"{target}_shadow_population_logits"] = logits.population
        if shadows.canaries is not None:
            out[f"{target}_shadow_canary_logits"] = logits.canaries
        if target in targets:
            out[f"{target}_pool_logits"] = targets[target].logits
            if targets[target].population_logits is not None:
                out[f"{target}_population_logits"] = targets[target].population_logits
    if label_noise is not None and all(f"{SHADOW_SET}0" in logits.extra for logits in shadows.logits.values()):
        out["label_noise_selection"] = np.asarray(label_noise.selection, np.int64)
        out["label_noise_sigmas"] = np.asarray(SIGMAS, np.float64)
        shape = (len(SIGMAS), label_noise.copies, len(label_noise.selection))
        for target, logits in shadows.logits.items():
            out[f"{target}_shadow_label_noise_predictions"] = np.stack(
                [predicted_labels(logits.extra[f"{SHADOW_SET}{g}"]) for g in range(len(SIGMAS))], axis=1
            ).reshape(len(shadows.membership), *shape).astype(np.int32)
    if shadows.canaries is not None:
        out["canary_labels"] = np.asarray(shadows.canaries.y, np.int64)
        out["canary_included"] = np.asarray(shadows.canaries.included, bool)
    return out


def write_shadow_outputs(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write :data:`SHADOW_OUTPUTS` owner-only (0600), byte for byte the same for the same arrays.

    ``np.savez_compressed`` stamps each member with the current time; this writes the same
    ``.npz`` layout (one ``.npy`` per key, deflated) with a fixed timestamp instead.
    """
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle, \
            zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def read_shadow_outputs(path: Path) -> dict[str, np.ndarray]:
    """Every array of a :data:`SHADOW_OUTPUTS` file (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
