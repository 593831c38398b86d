"""The δ of a run when the spec leaves it unset."""

from __future__ import annotations


def default_delta(n_records: int) -> float:
    """min(1 / (10·n_records), 1e-5): well below 1/n, so δ cannot hide a whole record's leak.

    A mechanism that publishes one record in full at random is (0, 1/n)-DP; δ must be far
    below 1/n for (ε, δ) to mean anything, hence the factor 10 and the 1e-5 cap.
    """
    return min(1.0 / (10 * n_records), 1e-5)
