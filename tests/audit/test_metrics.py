"""ROC metrics against hand-computed values, ties, the too-few-non-members rule, bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from distillguard.audit import metrics as M
from distillguard.report.plots import save_roc_plot, without_plots

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
MEMBERS = np.array([1, 1, 0, 1, 0, 0], dtype=bool)


def test_hand_computed_roc():
    # members 0.9, 0.8, 0.6; non-members 0.7, 0.5, 0.4
    fpr, tpr = M.roc(SCORES, MEMBERS)
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert M.auc(SCORES, MEMBERS) == pytest.approx(8 / 9)  # 8 of 9 member/non-member pairs ordered right
    assert M.tpr_at_fpr(SCORES, MEMBERS, 1 / 3) == pytest.approx(1.0)  # threshold 0.6: TP 3, FP 1
    assert M.tpr_at_fpr(SCORES, MEMBERS, 0.3) is None  # 3 non-members cannot resolve 0.3 < 1/3
    assert M.tpr_at_fpr(SCORES, MEMBERS, 0.0) == pytest.approx(2 / 3)  # threshold 0.8
    assert M.balanced_accuracy(SCORES, MEMBERS) == pytest.approx((1 + 2 / 3) / 2)
    assert M.advantage(SCORES, MEMBERS) == pytest.approx(2 / 3)


def test_ties_are_never_split():
    scores = np.array([1.0, 1.0, 0.0, 0.0])
    members = np.array([True, False, True, False])
    assert M.tpr_at_fpr(scores, members, 0.0) == 0.0  # taking the member at 1.0 takes the non-member too
    assert M.tpr_at_fpr(scores, members, 0.5) == 0.5
    assert M.auc(scores, members) == 0.5
    assert M.balanced_accuracy(scores, members) == 0.5
    # the order of tied records must not matter
    assert M.tpr_at_fpr(scores[[1, 0, 3, 2]], members[[1, 0, 3, 2]], 0.0) == 0.0


def test_all_tied_scores_give_chance():
    scores = np.zeros(10)
    members = np.arange(10) % 2 == 0
    assert M.auc(scores, members) == 0.5
    assert M.tpr_at_fpr(scores, members, 0.0) == 0.0
    assert M.advantage(scores, members) == 0.0


def test_too_few_nonmembers_gives_none():
    rng = np.random.default_rng(0)
    scores, members = rng.normal(size=150), np.arange(150) < 100  # 50 non-members
    assert M.tpr_at_fpr(scores, members, 0.01) is None  # 1/50 > 0.01
    assert M.tpr_at_fpr(scores, members, 0.02) is not None  # 1/50 = 0.02 resolvable
    assert M.tpr_at_fpr(scores, members, 0.0) is not None
    summary = M.summarize(scores, members, n_bootstrap=20)
    assert summary.tpr_at_fpr["0.01"] is None and summary.tpr_at_fpr_ci["0.01"] is None
    assert summary.tpr_at_fpr["0.001"] is None and summary.tpr_at_fpr["0"] is not None
    assert summary.tpr_at_fpr_ci["0"] is not None


def test_exactly_resolvable_fpr():
    scores = np.concatenate([np.arange(100) + 1000.0, np.arange(100.0)])  # members all above
    members = np.arange(200) < 100
    scores[100] = 5000.0  # one non-member on top: FPR 1/100 needed to reach any member
    assert M.tpr_at_fpr(scores, members, 0.0) == 0.0
    assert M.tpr_at_fpr(scores, members, 0.01) == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=40), st.sampled_from([0.0, 0.1, 0.25, 0.5]))
def test_matches_brute_force_and_sklearn(records, max_fpr):
    scores = np.array([float(s) for s, _ in records])  # small integer scores: many ties
    members = np.array([m for _, m in records])
    if members.all() or not members.any():
        with pytest.raises(ValueError, match="no (non-)?members"):
            M.auc(scores, members)
        return
    n_in, n_out = members.sum(), (~members).sum()
    points = [(np.sum(members & (scores >= t)) / n_in, np.sum(~members & (scores >= t)) / n_out)
              for t in [np.inf, *np.unique(scores)]]
    expected = max(tp for tp, fp in points if fp <= max_fpr + 1e-12)
    got = M.tpr_at_fpr(scores, members, max_fpr)
    if max_fpr > 0 and 1 / n_out > max_fpr:
        assert got is None
    else:
        assert got == pytest.approx(expected)
    assert M.advantage(scores, members) == pytest.approx(max(abs(tp - fp) for tp, fp in points))
    rows = np.stack([scores, scores[::-1]])
    np.testing.assert_allclose(M._auc_batch(rows, members),
                               [roc_auc_score(members, scores), roc_auc_score(members, scores[::-1])])


def _data(n_in=300, n_out=400, shift=1.0, seed=0):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(shift, 1, n_in), rng.normal(0, 1, n_out)])
    return scores, np.arange(n_in + n_out) < n_in


def test_bootstrap_deterministic_and_covers_point_estimate():
    scores, members = _data()
    ci = M.bootstrap_ci(M.auc, scores, members, n_resamples=100, confidence=0.95, seed=3)
    assert ci == M.bootstrap_ci(M.auc, scores, members, n_resamples=100, confidence=0.95, seed=3)
    assert ci != M.bootstrap_ci(M.auc, scores, members, n_resamples=100, confidence=0.95, seed=4)
    point = M.auc(scores, members)
    assert ci[0] < point < ci[1] and ci[1] - ci[0] < 0.15
    narrow = M.bootstrap_ci(M.auc, scores, members, n_resamples=100, confidence=0.5, seed=3)
    assert ci[0] <= narrow[0] <= narrow[1] <= ci[1]


def test_bootstrap_is_stratified():
    scores, members = _data(n_in=30, n_out=70)
    seen = []
    M.bootstrap_ci(lambda s, m: seen.append(int(m.sum())) or 0.0, scores, members,
                   n_resamples=10, confidence=0.9, seed=0)
    assert seen == [30] * 10


def test_summarize_matches_generic_bootstrap_and_is_json():
    scores, members = _data(n_out=1000)
    summary = M.summarize(scores, members, n_bootstrap=50, seed=7)
    assert summary.auc_ci == pytest.approx(M.bootstrap_ci(M.auc, scores, members, n_resamples=50,
                                                          confidence=0.95, seed=7))
    tpr_ci = M.bootstrap_ci(lambda s, m: M.tpr_at_fpr(s, m, 0.01), scores, members, n_resamples=50,
                            confidence=0.95, seed=7)
    assert summary.tpr_at_fpr_ci["0.01"] == pytest.approx(tpr_ci)
    assert summary.auc == pytest.approx(M.auc(scores, members))
    assert summary.tpr_at_fpr["0.001"] is not None  # 1000 non-members resolve 0.1%
    for key, (lo, hi) in summary.tpr_at_fpr_ci.items():
        assert lo <= summary.tpr_at_fpr[key] <= hi
    out = summary.to_dict()
    json.dumps(out, allow_nan=False)
    assert set(out["tpr_at_fpr"]) == {"0.01", "0.001", "0"}
    assert out["n_members"] == 300 and out["n_nonmembers"] == 1000
    assert isinstance(out["auc_ci"], list)


def test_summarize_without_bootstrap():
    scores, members = _data()
    summary = M.summarize(scores, members, n_bootstrap=0)
    assert summary.auc_ci is None and all(v is None for v in summary.tpr_at_fpr_ci.values())


@pytest.mark.parametrize(("members", "match"), [(np.zeros(5, bool), "no members"), (np.ones(5, bool), "no non-members")])
def test_empty_class_raises(members, match):
    with pytest.raises(ValueError, match=match):
        M.summarize(np.arange(5.0), members)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="same length"):
        M.auc(np.arange(3.0), np.array([True, False]))
    with pytest.raises(ValueError, match="NaN"):
        M.auc(np.array([0.1, np.nan]), np.array([True, False]))
    with pytest.raises(ValueError, match="not a number"):
        M.summarize(np.arange(4.0), np.arange(4) < 2, fprs=("1%",))


def test_save_roc_plot_writes_png(tmp_path):
    scores, members = _data()
    curves = {"teacher": M.roc(scores, members), "student": M.roc(scores * 0.1 + np.random.default_rng(1).normal(size=scores.size), members)}
    path = tmp_path / "roc.png"
    save_roc_plot(curves, path, title="loss: teacher vs student")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["roc.png"]  # no temp file left behind
    with without_plots():  # the tuner's candidates: no plot, and drawing resumes after the block
        save_roc_plot(curves, tmp_path / "skipped.png", title="skipped")
    assert not (tmp_path / "skipped.png").exists()
    save_roc_plot(curves, tmp_path / "again.png", title="again")
    assert (tmp_path / "again.png").is_file()
