"""Label-only membership attacks: what an attacker learns from the predicted class alone.

A deployed model often answers with a class and nothing else, and defenses that only
perturb or coarsen the probabilities leave the class unchanged. Two attacks read nothing
but predicted classes (``predict(X) -> (n,)``), so they measure what such a release leaks:

- ``label_gap`` (Yeom et al. 2018, the "gap attack"): score 1 when the model predicts the
  record's true class, else 0. One query per record.
- ``label_noise`` (Choquette-Choo et al., ICML 2021, "Label-Only Membership Inference
  Attacks", the data-augmentation / noise-robustness attack): the record and ``N`` noisy
  copies ``x + σ · s ⊙ ε`` (``ε ~ N(0, I)``, seeded; ``s`` each feature's standard deviation
  on the population records, known non-members of every model), score = the fraction of
  those ``N + 1`` queries the model labels correctly. Members sit further from the decision
  boundary, so their label survives more noise. ``N + 1`` queries per record.

``σ`` is chosen from :data:`SIGMAS` on the shadow models, never on the audited model: every
shadow scores a seeded subset of the pool with each ``σ``, and the ``σ`` whose scores
separate the shadows' own members from their non-members best (AUC pooled over the
shadows) is applied to the audited model. Without shadows it is :data:`DEFAULT_SIGMA`.
The same noise ``ε`` serves every ``σ``, every shadow and every audited model.

These attacks do not enter the "strongest" selection (audit/selection.py): it compares
configurations of the confidence-based shadow attacks on the same shadow logits, while
``label_noise`` needs its own queries, and its ``σ`` is itself chosen on the shadows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from distillguard.audit.metrics import auc
from distillguard.seeding import derive_seed

#: Noise scales searched, in units of each feature's standard deviation on the population.
SIGMAS: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
#: The scale used when there are no shadows to choose on.
DEFAULT_SIGMA = 0.3
#: Pool records (a seeded subset) the shadows score with each σ to choose it.
SELECTION_RECORDS = 128
#: Prefix of the shadows' evaluation sets that hold the noisy copies (one set per σ).
SHADOW_SET = "label_noise_sigma"
SCALE_NOTE = "σ × each feature's standard deviation on the population (test) records"

Predict = Callable[[np.ndarray], np.ndarray]  # (n, d) rows -> (n,) predicted classes


def predicted_labels(logits: np.ndarray) -> np.ndarray:
    """The class a label-only API would return: arg-max over the last axis, shape ``(...,)``."""
    return np.argmax(np.asarray(logits), axis=-1)


def gap_scores(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The gap attack: 1.0 where the predicted class is the true class, else 0.0; shape of ``predicted``."""
    return (np.asarray(predicted) == np.asarray(labels)).astype(np.float64)


def noise_scores(clean_correct: np.ndarray, noisy_correct: np.ndarray) -> np.ndarray:
    """Fraction of the ``N + 1`` queries labelled correctly.

    Args:
        clean_correct: ``(..., n)`` bool, the record itself labelled correctly.
        noisy_correct: ``(..., N, n)`` bool, each noisy copy labelled correctly.

    Returns:
        ``(..., n)`` float64 in [0, 1], multiples of ``1 / (N + 1)``.
    """
    copies = noisy_correct.shape[-2]
    total = np.asarray(clean_correct, dtype=np.float64) + np.sum(noisy_correct, axis=-2, dtype=np.float64)
    return total / (copies + 1)


def feature_scale(population_X: np.ndarray) -> np.ndarray:
    """``(d,)`` float32 standard deviation of each feature on the population; 0 for a constant one."""
    X = np.asarray(population_X, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise ValueError(f"feature_scale needs (m, d) population rows with m >= 2; got shape {X.shape}")
    return X.std(axis=0).astype(np.float32)


@dataclass(frozen=True, eq=False)
class NoisePlan:
    """The noisy copies of the audit pool: the same ``ε`` for every σ, shadow and audited model.

    Attributes:
        noise: ``(N, n, d)`` float32 standard normal draws, copy-major.
        scale: ``(d,)`` per-feature scale (:func:`feature_scale`).
        selection: ``(m,)`` the pool records the shadows score to choose σ.
    """

    noise: np.ndarray
    scale: np.ndarray
    selection: np.ndarray

    @classmethod
    def build(cls, pool_X: np.ndarray, population_X: np.ndarray, *, copies: int, seed: int) -> NoisePlan:
        """The plan for ``copies`` noisy copies of every row of ``pool_X``, seeded by ``seed``."""
        if copies < 1:
            raise ValueError(f"label_noise needs at least one noisy copy per record; got {copies}")
        n, d = np.asarray(pool_X).shape
        noise = np.random.default_rng(derive_seed(seed, "label_noise", "noise")).standard_normal(
            (copies, n, d), dtype=np.float32)
        picked = np.random.default_rng(derive_seed(seed, "label_noise", "selection")).permutation(n)
        return cls(noise, feature_scale(population_X), np.sort(picked[:SELECTION_RECORDS]))

    @property
    def copies(self) -> int:
        return int(self.noise.shape[0])

    @property
    def queries(self) -> int:
        """Queries ``label_noise`` makes per record: the record and its noisy copies."""
        return self.copies + 1

    def rows(self, X: np.ndarray, sigma: float, records: np.ndarray | None = None) -> np.ndarray:
        """``(N · k, d)`` float32 noisy copies of ``X[records]`` (default all), copy-major."""
        idx = np.arange(len(X)) if records is None else np.asarray(records)
        base = np.asarray(X, dtype=np.float32)[idx]
        noisy = base[None] + np.float32(sigma) * self.scale * self.noise[:, idx]
        return noisy.reshape(-1, base.shape[1])

    def shadow_sets(self, pool_X: np.ndarray) -> dict[str, np.ndarray]:
        """The shadows' evaluation sets: the selection records' copies at each σ of :data:`SIGMAS`."""
        return {f"{SHADOW_SET}{g}": self.rows(pool_X, sigma, self.selection) for g, sigma in enumerate(SIGMAS)}

    def correct(self, predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(..., N, k)`` bool from ``(..., N · k)`` predicted classes of copy-major rows and ``(k,)`` labels."""
        predicted = np.asarray(predicted)
        return predicted.reshape(*predicted.shape[:-1], self.copies, len(labels)) == np.asarray(labels)


def choose_sigma(plan: NoisePlan, *, clean_predicted: np.ndarray, noisy_predicted: dict[str, np.ndarray],
                 membership: np.ndarray, labels: np.ndarray) -> tuple[float, list[dict]]:
    """The σ of :data:`SIGMAS` with the highest AUC on the shadows, and every candidate's AUC.

    Reads the shadows only: their predictions and their own membership, never the audited
    model's. Ties go to the smaller σ.

    Args:
        clean_predicted: ``(S, n)`` the shadows' classes on the whole pool.
        noisy_predicted: set name (:meth:`NoisePlan.shadow_sets`) -> ``(S, N · m)`` their classes on the copies.
        membership: ``(S, n)`` bool, record in shadow's training set.
        labels: ``(n,)`` the pool's classes.
    """
    sel = plan.selection
    clean = clean_predicted[:, sel] == labels[sel]  # (S, m)
    is_member = membership[:, sel].ravel()
    table, best = [], None
    for g, sigma in enumerate(SIGMAS):
        scores = noise_scores(clean, plan.correct(noisy_predicted[f"{SHADOW_SET}{g}"], labels[sel])).ravel()
        area = auc(scores, is_member) if 0 < is_member.sum() < is_member.size else 0.5
        table.append({"sigma": sigma, "shadow_auc": round(area, 6)})
        if best is None or area > best[1]:
            best = (sigma, area)
    return best[0], table


def label_only_scores(names: list[str], plan: NoisePlan | None, *, predict: Predict, X: np.ndarray,
                      labels: np.ndarray, sigma: float) -> dict[str, tuple[np.ndarray, int]]:
    """Scores ``(n,)`` and queries per record of each label-only attack in ``names`` against one model.

    Args:
        predict: the audited model's label-only interface, ``(k, d) -> (k,)`` classes.
        X, labels: the audited records and their classes.
        plan, sigma: the noisy copies (None when ``label_noise`` is not in ``names``) and the σ to use.
    """
    clean = predict(X) == labels
    out: dict[str, tuple[np.ndarray, int]] = {}
    if "label_gap" in names:
        out["label_gap"] = (clean.astype(np.float64), 1)
    if "label_noise" in names:
        if plan is None:
            raise ValueError("label_noise needs a NoisePlan (its noisy copies)")
        noisy = plan.correct(predict(plan.rows(X, sigma)), labels)
        out["label_noise"] = (noise_scores(clean, noisy), plan.queries)
    return out


def noise_setting(plan: NoisePlan, *, target: str, shadow_pool_logits: np.ndarray | None = None,
                  shadow_extra: dict[str, np.ndarray] | None = None, membership: np.ndarray | None = None,
                  labels: np.ndarray | None = None) -> dict:
    """``label_noise``'s σ for one target and how it was chosen (the ``"noise"`` entry of its report row).

    With the shadows' logits (``shadow_pool_logits`` (S, n, C), ``shadow_extra`` their
    :meth:`NoisePlan.shadow_sets` logits, ``membership`` (S, n)), σ is chosen on them by
    :func:`choose_sigma`, reading only their predicted classes; without, it is :data:`DEFAULT_SIGMA`.
    """
    setting = {"sigma": DEFAULT_SIGMA, "copies": plan.copies, "scale": SCALE_NOTE,
               "chosen_on": "by default (no shadows to choose it on)"}
    if shadow_pool_logits is None:
        return setting
    sigma, table = choose_sigma(plan, clean_predicted=predicted_labels(shadow_pool_logits),
                                noisy_predicted={k: predicted_labels(v) for k, v in shadow_extra.items()},
                                membership=membership, labels=labels)
    return {**setting, "sigma": sigma, "candidates": table,
            "chosen_on": f"chosen on the {len(shadow_pool_logits)} shadow {target}s (highest AUC pooled over "
                         f"them on {len(plan.selection)} pool records)"}
