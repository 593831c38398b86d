"""Built-in data sets that need no download.

Each role is drawn from its own seeded stream, so producing the transfer set never
touches the member records (the student stage can load it alone).
"""

from __future__ import annotations

import numpy as np

from distillguard.config import DataConfig
from distillguard.data.types import Schema, Split

_ROLE_STREAM = {"members": 1, "nonmembers": 2, "transfer": 3, "test": 4}


def builtin_schema(cfg: DataConfig) -> Schema:
    if cfg.builtin == "digits":
        names = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)]
        return Schema(names, list(range(10)), (1, 8, 8))
    synth = cfg.synth
    return Schema([f"item_{i}" for i in range(synth.features)], list(range(synth.classes)), (synth.features,))


def load_builtin(cfg: DataConfig, role: str, *, seed: int) -> Split:
    size = getattr(cfg.split_sizes(), role)
    if cfg.builtin == "digits":
        return _digits(cfg, role, seed=seed)
    return _purchase_synth(cfg, role, size=size, seed=seed)


def _digits(cfg: DataConfig, role: str, *, seed: int) -> Split:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    sizes = cfg.split_sizes()
    order = np.random.default_rng([seed, 0]).permutation(len(X))
    bounds = np.cumsum([0, sizes.members, sizes.nonmembers, sizes.transfer, sizes.test])
    if bounds[-1] > len(X):
        from distillguard.errors import ConfigError

        raise ConfigError(f"[data.sizes]: digits has {len(X)} images; the sizes ask for {bounds[-1]}")
    k = list(_ROLE_STREAM).index(role)
    rows = order[bounds[k]:bounds[k + 1]]
    return Split(X=X[rows].astype(np.float32), y=y[rows].astype(np.int64), ids=np.arange(len(rows), dtype=np.int64))


def purchase_prototypes(cfg: DataConfig, *, seed: int) -> np.ndarray:
    """(classes, features) bool prototypes: families of classes that share most items.

    Purchase-100's classes are clusters of shopping baskets; here each family of classes
    starts from a shared random basket and each class changes a few items, so classes of
    one family are easy to confuse and a model must memorize to fit them all.
    """
    synth = cfg.synth
    rng = np.random.default_rng([seed, 0])
    families = rng.random((synth.clusters, synth.features)) < 0.2
    family_of = np.arange(synth.classes) % synth.clusters
    changes = rng.random((synth.classes, synth.features)) < 0.08
    return families[family_of] ^ changes


def _purchase_synth(cfg: DataConfig, role: str, *, size: int, seed: int) -> Split:
    prototypes = purchase_prototypes(cfg, seed=seed)
    rng = np.random.default_rng([seed, _ROLE_STREAM[role]])
    y = rng.integers(0, cfg.synth.classes, size=size)
    noise = rng.random((size, cfg.synth.features)) < cfg.synth.flip
    X = (prototypes[y] ^ noise).astype(np.float32)
    return Split(X=X, y=y.astype(np.int64), ids=np.arange(size, dtype=np.int64))
