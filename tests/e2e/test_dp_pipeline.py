"""DP-SGD teachers in the pipeline: the report's ε is ≤ target and Opacus recomputes it."""

from __future__ import annotations

import pytest

import distillguard
from distillguard.privacy.dp_sgd import recompute_epsilon


def test_dp_sgd_run_reports_epsilon_that_opacus_recomputes(tmp_path):
    (tmp_path / "spec.toml").write_text(
        '[run]\nname = "dp"\n[data]\nbuiltin = "purchase-synth"\n'
        "[data.sizes]\nmembers = 200\nnonmembers = 200\ntransfer = 400\ntest = 200\n"
        "[data.synth]\nfeatures = 60\nclasses = 5\nclusters = 2\n"
        "[teacher]\nhidden = [32]\nepochs = 5\n[student]\nhidden = [32]\nepochs = 10\n"
        "[privacy]\nmechanism = \"dp-sgd\"\nepsilon = 4.0\n"
        "[audit]\nshadows = 4\ncanaries = 8\nbootstrap = 0\n"
    )
    report = distillguard.run(tmp_path / "spec.toml", run_dir=tmp_path / "run").report
    privacy = report["privacy"]
    assert privacy["mechanism"] == "dp-sgd" and privacy["accountant"] == "prv"
    assert 0 < privacy["epsilon"] <= 4.0
    assert privacy["delta"] == pytest.approx(min(1 / (10 * 200), 1e-5))
    for key in ("noise_multiplier", "sample_rate", "steps", "max_grad_norm"):
        assert privacy[key] is not None
    assert recompute_epsilon(privacy) == pytest.approx(privacy["epsilon"], rel=0.05)
    assert report["teacher"]["source"] == "trained (dp-sgd)"
    assert report["empirical_epsilon"]["epsilon_lower"] <= privacy["epsilon"]
    html = (tmp_path / "run" / "report.html").read_text()
    assert "dp-sgd" in html and f"{privacy['epsilon']:.3f}" in html
