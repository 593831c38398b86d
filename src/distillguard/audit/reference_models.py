"""Reference models for a scan without a training recipe: out-models on non-member data only.

Without the recipe the audited model was trained with, no shadow can replay it, so online
LiRA (which needs in-models) cannot run. Offline LiRA and RMIA need only models that never
saw the audited records (Carlini et al. 2022, offline; Zarifzadeh et al. 2024): here,
models of the spec's ``[teacher]`` recipe (the default MLP when unset) trained on random
halves of one half of the test split, which the audited model never trained on and the
audit never scores. The other half is RMIA's population. A reference recipe that differs
from the audited model's makes these attacks weaker, never falsely stronger: their number
is a lower bound on the leak, like every number of a scan without a recipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillguard.audit.shadows import AuditPool, ShadowLogits, paired_membership, train_shadow_teachers
from distillguard.config import Spec
from distillguard.errors import ConfigError
from distillguard.seeding import derive_seed

__all__ = ["ReferenceModels", "train_reference_models"]


@dataclass(frozen=True)
class ReferenceModels:
    """R reference models' outputs, and how the test split was cut for them.

    Attributes:
        logits: (R, n, C) on the audit pool and (R, m, C) on the population, as :class:`ShadowLogits`.
        membership: (R, n) all False: no reference model saw an audited record.
        trained_on: test-split rows the references trained on (each on a random half of them).
        population: the other test-split rows, RMIA's population.
    """

    logits: ShadowLogits
    membership: np.ndarray
    trained_on: np.ndarray
    population: np.ndarray


def train_reference_models(spec: Spec, schema, *, pool_X: np.ndarray, test_X: np.ndarray, test_y: np.ndarray
                           ) -> ReferenceModels:
    """Train ``[audit] reference_models`` models on half of the test split; their logits on the pool and population."""
    count, seed = spec.audit.reference_models, spec.run.seed
    if len(test_X) < 8:
        raise ConfigError(f"[audit] reference_models = {count}: the test split has {len(test_X)} records; reference "
                          "models need at least 8 (half to train on, half as the population); set reference_models = 0")
    order = np.random.default_rng(derive_seed(seed, "reference-models", "split")).permutation(len(test_X))
    trained_on, population = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])
    source = AuditPool(test_X[trained_on], test_y[trained_on], np.zeros(len(trained_on), bool),
                       [f"test:{i}" for i in trained_on])
    halves = paired_membership(len(trained_on), count + count % 2, seed=derive_seed(seed, "reference-models"))[:count]
    out, _ = train_shadow_teachers(source, None, halves, spec=spec, schema=schema,
                                   eval_sets={"pool": pool_X, "population": test_X[population]})
    n_classes = out["pool"].shape[-1]
    logits = ShadowLogits(out["pool"], out["population"], np.zeros((count, 0, n_classes)))
    return ReferenceModels(logits, np.zeros((count, len(pool_X)), bool), trained_on, population)
