"""LM membership scores (MIMIR's loss, zlib, min-k%, min-k%++, reference) on hand-computed rows."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from distillguard.attack_names import LM_ATTACKS
from distillguard.audit.metrics import summarize
from distillguard.lm.probes.mia import (
    distribution_moments,
    lm_attack_results,
    loss_score,
    min_k_pp_score,
    min_k_score,
    reference_score,
    zlib_score,
)

ROW = np.array([-0.5, -4.0, -1.0, -3.0, -2.0])


def test_loss_is_the_mean_log_prob():
    np.testing.assert_allclose(loss_score([[-1.0, -2.0, -3.0], ROW]), [-2.0, -2.1])


def test_zlib_divides_by_the_compressed_length():
    assert len(zlib.compress(b"abc")) == 11
    np.testing.assert_allclose(zlib_score([[-1.0, -3.0]], ["abc"]), [-2.0 / 11])
    with pytest.raises(ValueError, match="1 texts for 2"):
        zlib_score([[-1.0], [-2.0]], ["abc"])


@pytest.mark.parametrize(("k", "expected"), [(0.4, -3.5),   # 2 lowest: −4, −3
                                             (0.2, -4.0),   # 1 lowest
                                             (0.1, -4.0),   # ⌊0.5⌋ = 0, at least 1 token
                                             (0.6, -3.0),   # 3 lowest: −4, −3, −2
                                             (1.0, -2.1)])  # every token: the loss
def test_min_k_is_the_mean_of_the_lowest_fraction(k, expected):
    assert min_k_score([ROW], k=k)[0] == pytest.approx(expected)


def test_min_k_pp_standardizes_each_token_then_takes_the_lowest():
    logprobs, mu, sigma = [-1.0, -2.0, -3.0], [-1.5, -1.5, -2.0], [0.5, 0.25, 2.0]
    # z = [(−1+1.5)/0.5, (−2+1.5)/0.25, (−3+2)/2] = [1, −2, −0.5]
    assert min_k_pp_score([logprobs], [mu], [sigma], k=0.34)[0] == pytest.approx(-2.0)
    assert min_k_pp_score([logprobs], [mu], [sigma], k=0.67)[0] == pytest.approx(-1.25)
    assert min_k_pp_score([logprobs], [mu], [sigma], k=1.0)[0] == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="shapes"):
        min_k_pp_score([logprobs], [mu[:2]], [sigma])


def test_distribution_moments_hand_computed():
    ln2 = math.log(2)
    mu, sigma = distribution_moments(np.log([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]))
    # ln p = (−ln2, −2ln2, −2ln2): μ = −1.5 ln2; E[(ln p)²] = 2.5 ln²2, σ² = 0.25 ln²2
    np.testing.assert_allclose(mu, [-1.5 * ln2] * 2)
    np.testing.assert_allclose(sigma, [0.5 * ln2] * 2)
    mu, sigma = distribution_moments(np.log(np.full(8, 1 / 8)))  # uniform: every token alike
    assert mu == pytest.approx(-math.log(8)) and sigma == pytest.approx(0.0, abs=1e-7)


def test_reference_is_the_reference_nll_minus_the_target_nll():
    # target mean NLL 1, reference mean NLL 3 (three tokens: another tokenizer)
    np.testing.assert_allclose(reference_score([[-1.0, -1.0]], [[-2.0, -3.0, -4.0]]), [2.0])


def test_every_score_ranks_a_better_predicted_text_higher():
    member, nonmember = np.full(10, -0.5), np.full(10, -3.0)
    assert np.all(np.diff(loss_score([nonmember, member])) > 0)
    assert np.all(np.diff(zlib_score([nonmember, member], ["same text"] * 2)) > 0)
    assert np.all(np.diff(min_k_score([nonmember, member])) > 0)
    assert np.all(np.diff(min_k_pp_score([nonmember, member], [np.full(10, -2.0)] * 2, [np.ones(10)] * 2)) > 0)
    assert np.all(np.diff(reference_score([nonmember, member], [np.full(10, -2.0)] * 2)) > 0)


@pytest.mark.parametrize("k", [0, -0.1, 1.5])
def test_bad_k_is_rejected(k):
    with pytest.raises(ValueError, match=r"k must be a fraction in \(0, 1\]"):
        min_k_score([ROW], k=k)


def test_empty_or_nan_rows_are_rejected():
    with pytest.raises(ValueError, match=r"logprobs\[1\] must be a non-empty 1-D array"):
        loss_score([ROW, []])
    with pytest.raises(ValueError, match="contains NaN"):
        loss_score([[np.nan, -1.0]])


def test_attack_results_are_report_entries_from_summarize():
    rng = np.random.default_rng(0)
    is_member = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    scores = {"loss": rng.normal(size=100) + is_member, "min_k": rng.normal(size=100)}
    entries = lm_attack_results(scores, is_member, target="teacher", n_bootstrap=20, seed=1)
    assert [e["attack"] for e in entries] == ["loss", "min_k"]
    expected = summarize(scores["loss"], is_member, n_bootstrap=20, seed=1).to_dict()
    assert entries[0] == {"attack": "loss", "target": "teacher", "population": "all", **expected}
    assert set(LM_ATTACKS) == {"loss", "zlib", "min_k", "min_k_pp", "reference"}
