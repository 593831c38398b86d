"""Must-show of issue 14: the report's "strongest" attack holds against LiRA written from the reference formulas.

The reference LiRA here is written from Carlini et al. 2022 and tensorflow/privacy
``research/mi_lira_2021/plot.py`` (medians as centres, ``fix_variance``: one σ, the
``np.std`` of all values of one side) and imports nothing from distillguard's attack
code: it reads only ``audit/shadow_outputs.npz``, the persisted shadow outputs.

FPR levels: the built-in tiny pool has about 270 non-members and the CSV pool about 180,
so FPR ≤ 1 % allows 2 (resp. 1) false positives and ≤ 0.5 % allows 1 (resp. 0): both
levels are resolvable on the built-in pool; on the CSV pool 0.5 % is not (fewer than 200
non-members), and the test reads the lowest FPR it resolves (one false positive) instead.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from sklearn.metrics import roc_curve

from tests.conftest import TINY_MODELS, csv_spec_text, run_cli, write_csv_splits

SLACK = 1e-9


def _phi(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y − log(1 − p_y) from logits, stably (the reference's score.py)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    y = np.broadcast_to(labels, z.shape[:-1])[..., None]
    z_y = np.take_along_axis(z, y, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, y, -np.inf, axis=-1)
    return z_y - np.log(np.exp(others).sum(axis=-1))


def _reference_lira(keep, shadow_phi, target_phi, *, online: bool, variance_from: str, one_sided: bool = False):
    """Reference LiRA, fixed variance. keep (S, n) bool; shadow_phi (S, n); target_phi (n,). Higher = member."""
    n = keep.shape[1]
    dat_in = [shadow_phi[keep[:, j], j] for j in range(n)]
    dat_out = [shadow_phi[~keep[:, j], j] for j in range(n)]
    dat_in = np.array([x[:min(map(len, dat_in))] for x in dat_in])
    dat_out = np.array([x[:min(map(len, dat_out))] for x in dat_out])
    std = np.std(dat_in) if variance_from == "in" else np.std(dat_out)
    mean_in, mean_out = np.median(dat_in, 1), np.median(dat_out, 1)
    if online:
        return scipy.stats.norm.logpdf(target_phi, mean_in, std) - scipy.stats.norm.logpdf(target_phi, mean_out, std)
    if one_sided:
        return -scipy.stats.norm.logsf(target_phi, mean_out, std)
    return -scipy.stats.norm.logpdf(target_phi, mean_out, std)  # the reference's two-sided offline test


def _tpr_at(scores, is_member, fpr):
    """Best TPR with FPR ≤ fpr, from sklearn's ROC (an implementation independent of ours)."""
    f, t, _ = roc_curve(is_member, scores, drop_intermediate=False)
    return float(t[f <= fpr + SLACK].max())


@pytest.fixture(scope="module", params=["builtin", "csv"])
def run(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    models = TINY_MODELS.replace("canaries = 16", "canaries = 0")
    if request.param == "builtin":
        text = ('[run]\nname = "tiny"\n[data]\nbuiltin = "purchase-synth"\n'
                "[data.sizes]\nmembers = 300\nnonmembers = 300\ntransfer = 600\ntest = 300\n"
                "[data.synth]\nfeatures = 80\nclasses = 10\nclusters = 5\n" + models)
    else:
        write_csv_splits(folder)
        text = csv_spec_text(extra=models)
    (folder / "spec.toml").write_text(text)
    result = run_cli("run", "spec.toml", "--run-dir", "out", cwd=folder)
    assert result.returncode == 0, result.stderr  # run exits 0 whatever the verdict (4: a bug)
    return folder / "out"


def _load(run):
    with np.load(run / "audit" / "shadow_outputs.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return arrays, json.loads((run / "audit" / "metrics.json").read_text())


def _references(keep, shadow_phi, target_phi):
    return {
        "online, σ from in-values (reference fix_variance)": _reference_lira(keep, shadow_phi, target_phi, online=True,
                                                                            variance_from="in"),
        "online, σ from out-values": _reference_lira(keep, shadow_phi, target_phi, online=True, variance_from="out"),
        "offline two-sided, σ from out-values": _reference_lira(keep, shadow_phi, target_phi, online=False,
                                                                variance_from="out"),
        "offline one-sided, σ from out-values": _reference_lira(keep, shadow_phi, target_phi, online=False,
                                                                variance_from="out", one_sided=True),
    }


def _power(scores, is_member):
    """The selection criterion, from sklearn: mean TPR at FPR <= 1 % and <= 0.1 %."""
    return np.mean([_tpr_at(scores, is_member, 0.01), _tpr_at(scores, is_member, 0.001)])


def test_on_held_out_shadows_strongest_beats_reference_lira(run):
    """Each shadow in turn is the target, the others calibrate (pooled: 8 × n/2 non-members, 0.1 % resolves)."""
    arrays, metrics = _load(run)
    keep, labels = arrays["shadow_membership"], arrays["pool_labels"]
    assert keep.shape == (8, len(labels)) and (keep.sum(axis=0) == 4).all()  # paired: each record in half
    shadow_phi = _phi(arrays["student_shadow_pool_logits"], labels)
    pooled: dict[str, list] = {}
    for s in range(len(keep)):
        rest = np.arange(len(keep)) != s
        for name, ref in _references(keep[rest], shadow_phi[rest], shadow_phi[s]).items():
            pooled.setdefault(name, []).append(ref)
    is_member = keep.reshape(-1)
    assert (~is_member).sum() >= 1000
    selection = metrics["strongest"]["student"]
    chosen = next(c for c in selection["candidates"] if {"attack": c["attack"], "params": c["params"]} == selection["chosen"])
    assert chosen["power"] == max(c["power"] for c in selection["candidates"])
    theirs = {name: _power(np.concatenate(scores), is_member) for name, scores in pooled.items()}
    # our "fixed" online LiRA is the reference code: the same held-out numbers, computed independently
    ours_fixed = next(c for c in selection["candidates"] if c["attack"] == "lira_online" and c["params"] == {"variance": "fixed"})
    assert ours_fixed["power"] == pytest.approx(theirs["online, σ from in-values (reference fix_variance)"], abs=1e-6)
    for name, power in theirs.items():
        assert chosen["power"] >= power - 1e-6, f"held-out power: strongest {chosen['power']:.4f} < reference ({name}) {power:.4f}"


def test_on_the_real_student_strongest_is_reference_lira_or_better_within_sampling_error(run):
    """On the real student: TPR at 1 % and 0.5 % FPR (or, where 0.5 % is unresolvable, one false positive).

    The configuration was chosen on the shadows, so on one target it can lose by chance: with
    n members, a TPR p has a binomial standard error sqrt(p(1 − p)/n). The test allows two of
    them (one record's worth when p is 0): at the built-in tiny pool's 270 members that is
    about ±2.4 points at p = 4 %, which a broken attack (a TPR near 0 where LiRA finds
    more) exceeds.
    """
    arrays, _ = _load(run)
    report = json.loads((run / "report.json").read_text())
    keep, labels, is_member = arrays["shadow_membership"], arrays["pool_labels"], arrays["pool_is_member"]
    references = _references(keep, _phi(arrays["student_shadow_pool_logits"], labels),
                             _phi(arrays["student_pool_logits"], labels))
    scores = pd.read_parquet(run / "audit" / "scores.parquet")
    mine = scores[(scores.attack == "strongest") & (scores.target == "student") & ~scores.is_canary]
    assert list(mine.example_id) == list(arrays["pool_example_ids"])  # the same records, in the same order
    strongest = mine.score.to_numpy()
    row = next(a for a in report["attacks"] if a["attack"] == "strongest" and a["target"] == "student"
               and a["population"] == "all")
    assert row["configuration"] == json.loads((run / "audit" / "metrics.json").read_text())["strongest"]["student"]["chosen"]
    n_in, n_out = int(is_member.sum()), int((~is_member).sum())
    assert row["tpr_at_fpr"]["0.01"] == pytest.approx(_tpr_at(strongest, is_member, 0.01), abs=1e-6)
    for fpr in [0.01, 0.005 if 0.005 * n_out >= 1 else 1 / n_out]:
        ours = _tpr_at(strongest, is_member, fpr)
        for name, ref in references.items():
            theirs = _tpr_at(ref, is_member, fpr)
            allowed = 2 * max(np.sqrt(theirs * (1 - theirs) / n_in), 1 / n_in)
            assert ours >= theirs - allowed, (f"FPR <= {fpr:.4f}: strongest {ours:.3f} < reference LiRA ({name}) "
                                              f"{theirs:.3f} by more than sampling error ({allowed:.3f})")
