"""The default δ: min(1 / (10·n), 1e-5), shared by DP-SGD and PATE."""

from __future__ import annotations

import pytest

from distillguard.privacy.delta import default_delta


def test_default_delta_is_far_below_one_over_n():
    assert default_delta(300) == 1e-5
    assert default_delta(20_000) == pytest.approx(5e-6)
    assert all(default_delta(n) <= 0.1 / n for n in (1, 10, 10**3, 10**6))
