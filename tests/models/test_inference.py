"""predict_logits: eval-mode inference in chunks, the same numbers whatever the chunk size."""

from __future__ import annotations

import torch
from torch import nn

from distillguard.models.classifiers import architecture, build_model
from distillguard.models.inference import predict_logits


def test_chunks_give_the_whole_batch_logits_in_eval_mode():
    model = build_model(architecture(kind="mlp", input_shape=(5,), n_classes=3, hidden=[8], channels=[]), seed=0)
    model.train()
    X = torch.randn(37, 5, generator=torch.Generator().manual_seed(0))
    whole = predict_logits(model, X)
    assert not model.training and whole.shape == (37, 3) and whole.device == torch.device("cpu")
    torch.testing.assert_close(predict_logits(model, X, batch_size=8), whole, rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model(X), whole, rtol=0, atol=1e-6)


def test_no_rows_no_logits():
    assert predict_logits(nn.Linear(4, 2), torch.empty(0, 4)).numel() == 0
