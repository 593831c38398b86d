"""Knowledge-distillation loss (Hinton et al. 2015), as pure tensor maths."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float, alpha: float = 0.0) -> torch.Tensor:
    """``(1−α)·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + α·CE(argmax z_t, z_s)``.

    Hinton et al. 2015, Sec. 2. The KL is averaged over the batch (``batchmean``), not
    over batch × classes as ``reduction="mean"`` would do (a bug in several public MIA
    defense baselines). T² keeps gradient magnitudes comparable across temperatures. The
    hard term uses the teacher's argmax because the student never sees true labels.

    Args:
        student_logits: (B, C) raw student outputs.
        teacher_logits: (B, C) stored teacher logits at T=1.
        temperature: T > 0.
        alpha: weight of the hard-label term, in [0, 1].
    """
    t = temperature
    # F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean"), written out: the
    # same elementwise terms and sum (the same numbers), but every op has a vmap batching
    # rule, so the audit's stacked shadow students take one loss call, not one per model.
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)
    soft = (log_p_t.exp() * (log_p_t - log_p_s)).sum() / student_logits.shape[0] * (t * t)
    if alpha == 0.0:
        return soft
    hard = F.cross_entropy(student_logits, teacher_logits.argmax(dim=-1))
    return (1.0 - alpha) * soft + alpha * hard
