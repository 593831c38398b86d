"""HAMP's training objective (Chen & Pattabiraman, NDSS 2024, Sec. IV-A and IV-B), training part only.

HAMP trains the model towards *less confident* predictions, so members and nonmembers
look alike to score-based attacks:

1. **High-entropy soft targets.** The one-hot label is replaced by a target where the
   true class keeps probability ``p`` and the other ``C - 1`` classes share ``1 - p``
   uniformly, with ``p`` chosen so that the target's entropy equals ``gamma · log C``.
   The reference code lowers ``p`` in steps of 0.01 until the entropy passes the
   threshold; here ``p`` is the exact root (bisection to float64 precision), so the
   target meets the threshold exactly.
2. **Entropy regularisation.** ``loss = KL(target ‖ softmax(z)) − alpha · H(softmax(z))``,
   the KL averaged over the batch (``"batchmean"``: the reference code's
   ``F.kl_div(..., reduction="mean")`` divides by the number of classes too, so its
   ``alpha`` is ``C`` times ours).

HAMP's third part, replacing the output at test time, is left out on purpose: a
label-only attack undoes it (Aerni, Zhang & Tramèr 2024), and a distilled student
releases the teacher's knowledge through its own outputs anyway.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def target_entropy(p: float, n_classes: int) -> float:
    """Entropy (nats) of the target with ``p`` on one class and the rest spread uniformly over ``C - 1``."""
    rest = 1.0 - p
    h = -p * math.log(p) if p > 0 else 0.0
    return h - rest * math.log(rest / (n_classes - 1)) if rest > 0 else h


def top_probability(n_classes: int, gamma: float) -> float:
    """The true class's probability ``p`` in [1/C, 1] whose target has entropy ``gamma · log C`` exactly.

    The entropy falls strictly from ``log C`` at ``p = 1/C`` to 0 at ``p = 1``, so the root
    is unique; bisection runs until the interval stops shrinking in float64.
    """
    if n_classes < 2 or not 0.0 < gamma < 1.0:
        raise ValueError(f"HAMP needs at least 2 classes and 0 < gamma < 1, got C={n_classes}, gamma={gamma}")
    threshold = gamma * math.log(n_classes)
    low, high = 1.0 / n_classes, 1.0  # entropy(low) = log C > threshold > 0 = entropy(high)
    while True:
        mid = 0.5 * (low + high)
        if mid in (low, high):
            return low  # the largest p whose entropy is still >= the threshold
        if target_entropy(mid, n_classes) >= threshold:
            low = mid
        else:
            high = mid


def hamp_targets(y: torch.Tensor, n_classes: int, gamma: float, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B,) class indices -> (B, C) HAMP soft targets."""
    p = top_probability(n_classes, gamma)
    targets = torch.full((len(y), n_classes), (1.0 - p) / (n_classes - 1), dtype=dtype, device=y.device)
    return targets.scatter_(1, y.long()[:, None], p)


def hamp_loss(logits: torch.Tensor, y: torch.Tensor, *, gamma: float, alpha: float) -> torch.Tensor:
    """``KL(target ‖ softmax(z))`` (batch mean) ``− alpha ·`` mean entropy of ``softmax(z)``; (B, C), (B,) -> scalar."""
    log_p = F.log_softmax(logits, dim=-1)
    targets = hamp_targets(y, logits.shape[-1], gamma, dtype=log_p.dtype)
    kl = F.kl_div(log_p, targets, reduction="batchmean")
    entropy = -(log_p.exp() * log_p).sum(-1).mean()
    return kl - alpha * entropy
