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
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)
    if alpha == 0.0:
        return soft
    hard = F.cross_entropy(student_logits, teacher_logits.argmax(dim=-1))
    return (1.0 - alpha) * soft + alpha * hard
