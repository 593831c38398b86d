"""The DP synthetic transfer set, replayed by every shadow pipeline on its own training set.

With ``[transfer.synthetic]`` the real teacher labels rows of a generator fitted on the
members; a shadow that labelled the real synthetic rows would replay a pipeline whose
transfer set depends on the *real* members, not its own. So shadow s fits its own
generator (same mechanism, ε, rows) on exactly the records its teacher trains on, pool
records and planted canaries or decoys included, guards its samples against the audit's
private records (the pool and every canary and decoy, as the real guard checks members
and nonmembers), and its teacher labels those rows. Nothing outside the shadow's training
set reaches its generator (``tests/audit/test_synthetic_shadows.py``).
"""

from __future__ import annotations

import numpy as np

from distillguard import progress
from distillguard.audit.shadows import AuditPool, CanarySet, _shadow_training_set
from distillguard.config import Spec
from distillguard.data.synthetic_transfer import resolved_delta, synthetic_transfer
from distillguard.data.types import Schema
from distillguard.seeding import derive_seed


def shadow_training_rows(s: int, pool: AuditPool, canaries: CanarySet | None, membership: np.ndarray, *,
                         seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of shadow s's training set: what its teacher trains on and its generator sees."""
    X, y, _, _ = _shadow_training_set(s, pool, canaries, membership, val_fraction=0.0, seed=seed)
    return X, y


def shadow_synthetic_transfer(pool: AuditPool, canaries: CanarySet | None, membership: np.ndarray, *, spec: Spec,
                              schema: Schema) -> np.ndarray:
    """(S · rows, d): shadow s's own guarded synthetic transfer set is block s.

    Each generator's δ follows the real rule on its own table (min(1/(10·n), 1e-5) unless the
    spec sets δ), its seed derives from s alone, so any split of the shadows gets the same sets.
    """
    cfg, seed = spec.transfer.synthetic, spec.run.seed
    private = {"pool": pool.X}
    if canaries is not None:
        private["canaries"] = np.concatenate([canaries.X, canaries.decoy_X])
    blocks = []
    with progress.task(f"audit: shadow DP generators ({cfg.mechanism})", len(membership)) as advance:
        for s in range(len(membership)):
            X, y = shadow_training_rows(s, pool, canaries, membership, seed=seed)
            out = synthetic_transfer(X, y, schema=schema, cfg=cfg, delta=resolved_delta(cfg, len(X)), private=private,
                                     leak_threshold=spec.data.leak_threshold,
                                     seed=derive_seed(seed, "shadow", s, "synthetic-transfer"))
            blocks.append(out.X)
            advance(1)
    return np.concatenate(blocks)
