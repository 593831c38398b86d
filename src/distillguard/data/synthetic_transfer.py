"""A DP synthetic transfer set: the generator fitted on a private table, its samples guarded.

One function serves the real pipeline (the label stage, on the members) and the audit's
shadows (each on its own training set), so the shadows replay exactly what the teacher's
side does: fit the generator, sample, drop every row the leak guard flags as an exact or
near copy of a private record, and draw again until ``rows`` rows pass (sampling is
post-processing of the DP generator: it spends no budget).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distillguard.config import SyntheticTransferConfig
from distillguard.data.leakguard_tabular import find_tabular_leaks
from distillguard.data.synthetic_domain import table_attributes
from distillguard.data.types import Schema
from distillguard.errors import DataError
from distillguard.privacy.delta import default_delta
from distillguard.seeding import derive_seed

MAX_DRAWS = 8  # rounds of `rows` samples before giving up on a generator that mostly copies


@dataclass(frozen=True)
class SyntheticTransfer:
    """``rows`` synthetic inputs that passed the leak guard, and the generator's record.

    Attributes:
        X: (rows, d) float32 features (no label: the teacher labels them).
        record: mechanism, ε, δ, ρ and the measured ρ; rows drawn and rows the guard dropped.
    """

    X: np.ndarray
    record: dict


def resolved_delta(cfg: SyntheticTransferConfig, n_records: int) -> float:
    """The generator's δ: the spec's, or min(1/(10·n), 1e-5) for the real members' count."""
    return cfg.delta if cfg.delta is not None else default_delta(n_records)


def synthetic_transfer(X: np.ndarray, y: np.ndarray, *, schema: Schema, cfg: SyntheticTransferConfig, delta: float,
                       private: dict[str, np.ndarray], leak_threshold: float, seed: int) -> SyntheticTransfer:
    """Fit the generator on ``(X, y)``, sample and guard until ``cfg.rows`` rows pass.

    Args:
        X: (n, d) the private table the generator sees; y: (n,) its labels.
        private: split name -> (m, d) rows a synthetic row must not copy (exactly, or nearer
            than ``leak_threshold`` in the leak guard's relative distance).
        seed: the fit and every draw derive from it.
    """
    from distillguard.data.synthetic import fit_mst

    generator = fit_mst(np.asarray(X), np.asarray(y), attrs=table_attributes(schema), epsilon=cfg.epsilon,
                        delta=delta, seed=derive_seed(seed, "synthetic", "fit"))
    kept, drawn, dropped, exact = [], 0, 0, 0
    for draw in range(MAX_DRAWS):
        Z, _ = generator.sample(cfg.rows, seed=derive_seed(seed, "synthetic", "sample", draw))
        report = find_tabular_leaks(Z, private, relative_threshold=leak_threshold, seed=seed)
        flagged = report.transfer_rows
        drawn, dropped, exact = drawn + len(Z), dropped + len(flagged), exact + len({t for t, *_ in report.exact})
        kept.append(np.delete(Z, flagged, axis=0))
        if sum(len(k) for k in kept) >= cfg.rows:
            break
    X_out = np.concatenate(kept)[: cfg.rows]
    if len(X_out) < cfg.rows:
        raise DataError(f"[transfer.synthetic]: {dropped} of {drawn} synthetic rows copy a private record (leak "
                        f"guard, [data] leak_threshold = {leak_threshold}); only {len(X_out)} of rows = {cfg.rows} "
                        "passed: lower rows, or epsilon (a noisier generator copies less)")
    record = {**generator.record(), "rows": int(cfg.rows), "drawn": int(drawn), "dropped_copies": int(dropped),
              "dropped_exact": int(exact), "fitted_on": int(len(X)), "domain": "fixed grid (no data-dependent bins)"}
    return SyntheticTransfer(X_out.astype(np.float32), record)
