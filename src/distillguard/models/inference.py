"""Eval-mode logits of a model on many rows: inference, which artifacts and training both need.

It sits with the models (not the training loop) so that :class:`~distillguard.models.artifact.Classifier`
can answer rows without reaching up into ``train/``.
"""

from __future__ import annotations

import torch
from torch import nn

from distillguard import device


@torch.no_grad()
def predict_logits(model: nn.Module, X: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
    """(n, C) logits in eval mode, in chunks, computed on the current device, returned on the CPU."""
    model.eval()
    target = device.current()
    model.to(target)
    return torch.cat([model(chunk.to(target)).cpu() for chunk in X.split(batch_size)]) if len(X) else torch.empty(0)
