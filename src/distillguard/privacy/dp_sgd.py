"""ε of DP-SGD (Abadi et al. 2016) from its noise, sampling rate and step count, via Opacus.

The Poisson-subsampled Gaussian mechanism with noise multiplier σ and rate q, composed
over ``steps`` noisy steps, is all the accountants need: "prv" is the tight numerical
accountant of Gopi et al. 2021, "rdp" the Rényi-DP one (Mironov 2017; Mironov et al.
2019 for subsampling) with the conversion of Balle et al. 2020. Opacus is imported where
it is used: only DP runs need it.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from distillguard.errors import ConfigError

ACCOUNTANTS = ("prv", "rdp")


def dp_sgd_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                   accountant: str) -> float:
    """ε at ``delta`` of ``steps`` Poisson-subsampled Gaussian steps (σ = ``noise_multiplier``, q = ``sample_rate``).

    Returns 0 for no step and inf for σ = 0 (no noise, no guarantee).
    """
    from opacus.accountants import create_accountant

    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    accounting = create_accountant(mechanism=accountant)
    accounting.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        if accountant == "prv":  # PRV sizes its grid with an RDP bound; that bound's order is moot
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(accounting.get_epsilon(delta=delta))


def recompute_epsilon(record: dict[str, Any]) -> float:
    """ε of a DP-SGD privacy record (``DPResult.privacy_record``), from a fresh Opacus accountant."""
    return dp_sgd_epsilon(noise_multiplier=float(record["noise_multiplier"]),
                          sample_rate=float(record["sample_rate"]), steps=int(record["steps"]),
                          delta=float(record["delta"]), accountant=record["accountant"])


def noise_multiplier_for_epsilon(*, target_epsilon: float, delta: float, sample_rate: float, epochs: int,
                                 accountant: str) -> float:
    """The σ at which ``epochs`` epochs at rate q end at ε ≤ ``target_epsilon`` (Opacus' binary search).

    This is the search ``PrivacyEngine.make_private_with_epsilon`` runs (``get_noise_multiplier``,
    tolerance 0.01 in ε), over ``int(epochs / sample_rate)`` steps.

    Raises:
        ConfigError: no σ up to Opacus' ceiling reaches the target.
    """
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():  # the search probes tiny σ, where RDP's top order is optimal
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            return get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                                        epochs=epochs, accountant=accountant)
    except ValueError as error:
        if "budget is too low" not in str(error):
            raise
        raise ConfigError(f"DP-SGD cannot reach ε = {target_epsilon} at δ = {delta:g} in {epochs} epochs ({error}); "
                          "raise epsilon, train fewer epochs or use smaller batches") from None
