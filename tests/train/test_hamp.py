"""HAMP's training objective: targets at the entropy threshold, the loss, and a less confident teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from distillguard.config import TeacherConfig
from distillguard.data.types import Schema, Split
from distillguard.train.hamp import hamp_loss, hamp_targets, target_entropy, top_probability
from distillguard.train.teacher import train_teacher


@pytest.mark.parametrize(("classes", "gamma"), [(2, 0.5), (3, 0.9), (10, 0.95), (100, 0.95), (100, 0.5), (7, 0.01)])
def test_target_meets_the_entropy_threshold_exactly(classes, gamma):
    p = top_probability(classes, gamma)
    t = hamp_targets(torch.tensor([0, classes - 1]), classes, gamma, dtype=torch.float64)
    entropy = -(t * t.log()).sum(-1)
    assert torch.allclose(entropy, torch.full((2,), gamma * math.log(classes), dtype=torch.float64), atol=1e-12)
    assert abs(target_entropy(p, classes) - gamma * math.log(classes)) < 1e-12
    # an independent root finder agrees, and the true class stays the argmax
    root = brentq(lambda q: target_entropy(q, classes) - gamma * math.log(classes), 1.0 / classes, 1.0 - 1e-15,
                  xtol=1e-15)
    assert abs(p - root) < 1e-10 and p > 1.0 / classes
    assert t[0].argmax() == 0 and t[1].argmax() == classes - 1 and torch.allclose(t.sum(-1), torch.ones(2, dtype=t.dtype))


def test_known_value_binary():
    """C = 2, gamma = 0.5: the binary entropy H(p) = 0.5·ln 2 at p = 0.8899728..."""
    assert top_probability(2, 0.5) == pytest.approx(0.889972, abs=1e-6)


def test_loss_is_batchmean_kl_minus_alpha_entropy():
    torch.manual_seed(0)
    z, y = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 5, (8,))
    t = hamp_targets(y, 5, 0.8, dtype=torch.float64)
    p = torch.softmax(z, -1)
    kl = (t * (t.log() - p.log())).sum() / 8  # per record, not per record × class
    entropy = -(p * p.log()).sum(-1).mean()
    assert hamp_loss(z, y, gamma=0.8, alpha=0.0).item() == pytest.approx(kl.item(), rel=1e-9)
    assert hamp_loss(z, y, gamma=0.8, alpha=0.3).item() == pytest.approx((kl - 0.3 * entropy).item(), rel=1e-9)
    # the KL part is zero at the target itself
    assert hamp_loss(t.log(), y, gamma=0.8, alpha=0.0).abs().item() < 1e-12


def test_hamp_teacher_predicts_with_much_higher_entropy_at_similar_accuracy():
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 1.2, (4, 12))
    y = rng.integers(0, 4, 700)
    X = (centers[y] + rng.normal(size=(700, 12))).astype(np.float32)
    schema = Schema([f"f{i}" for i in range(12)], [0, 1, 2, 3], (12,))
    members, test = Split(X[:400], y[:400], np.arange(400)), (X[400:], y[400:])
    common = dict(hidden=[64], epochs=30, batch_size=32, lr=3e-3, val_fraction=0.0)
    torch.set_num_threads(1)
    plain = train_teacher(members, schema=schema, cfg=TeacherConfig(**common), seed=0).classifier
    hamp = train_teacher(members, schema=schema, cfg=TeacherConfig(**common, hamp={"gamma": 0.9, "alpha": 0.1}),
                         seed=0).classifier

    def entropy(clf, X):
        p = clf.predict_proba(X)
        return float(-(p * np.log(p + 1e-30)).sum(1).mean())

    h_plain, h_hamp = entropy(plain, members.X), entropy(hamp, members.X)
    acc = {name: float((clf.logits(test[0]).argmax(1) == test[1]).mean()) for name, clf in (("plain", plain), ("hamp", hamp))}
    print(f"mean entropy plain {h_plain:.3f}, hamp {h_hamp:.3f} (ln 4 = {math.log(4):.3f}); accuracy {acc}")
    assert h_hamp > h_plain + 0.5, (h_plain, h_hamp)
    assert h_hamp > 0.8 * math.log(4)  # near the targets' 0.9·ln 4
    assert acc["hamp"] > acc["plain"] - 0.05 and acc["hamp"] > 0.5, acc
