"""LM training loops resume from an epoch checkpoint with exactly the uninterrupted weights."""

from __future__ import annotations

import pytest
import torch

TINY_LM = {"kind": "gpt2", "n_layer": 1, "n_embd": 64, "n_head": 2, "n_positions": 64}
BLOCK_LEN = 64
from distillguard.checkpoints import Checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_teacher_loop_resumes_bit_for_bit(tmp_path, small_corpus, small_tokenizer) -> None:
    from distillguard.lm.blocks import encode_blocks
    from distillguard.lm.models import build_causal_lm
    from distillguard.lm.train import train_causal_lm

    blocks = encode_blocks(small_tokenizer, small_corpus.members[:40], block_len=BLOCK_LEN)
    fresh = lambda: build_causal_lm(TINY_LM, tokenizer=small_tokenizer, seed=0)  # noqa: E731
    recipe = dict(epochs=3, lr=3e-3, batch_size=8, seed=0)
    reference = fresh()
    log = train_causal_lm(reference, blocks, **recipe)

    slot = Checkpoint(tmp_path / "teacher.pt", name="teacher", every_seconds=0)
    checkpointed = fresh()
    assert train_causal_lm(checkpointed, blocks, **recipe, checkpoint=slot) == log  # saving changes nothing
    assert torch.load(slot.path, weights_only=True)["epoch"] == 2  # the last epoch boundary before the end

    resumed = fresh()  # a new process: initial weights, then the saved epoch-2 state
    epochs_seen: list[int] = []
    resumed_log = train_causal_lm(resumed, blocks, **recipe, checkpoint=slot, on_epoch=epochs_seen.append)
    assert epochs_seen == [0, 1, 2] and resumed_log == log
    assert _max_diff(_weights(resumed), _weights(reference)) == 0.0

    # Control: the same epoch-2 state without its random streams ends elsewhere.
    saved = torch.load(slot.path, weights_only=True)
    saved["order_rng"] = torch.Generator().manual_seed(123).get_state()
    torch.save(saved, slot.path)
    wrong = fresh()
    train_causal_lm(wrong, blocks, **recipe, checkpoint=slot)
    assert _max_diff(_weights(wrong), _weights(reference)) > 0.0


def test_distillation_loop_resumes_bit_for_bit(tmp_path, small_corpus, small_tokenizer, trained_teacher) -> None:
    from distillguard.lm.blocks import iter_token_blocks
    from distillguard.lm.models import build_causal_lm
    from distillguard.lm.softlabel_reader import SoftLabelReader
    from distillguard.lm.softlabels import write_soft_labels
    from distillguard.lm.train import distill_causal_lm

    teacher, _ = trained_teacher
    write_soft_labels(teacher, list(iter_token_blocks(small_tokenizer, small_corpus.transfer[:30], block_len=BLOCK_LEN)),
                      folder=tmp_path / "labels", k=16, batch_size=8)
    reader = SoftLabelReader(tmp_path / "labels")
    fresh = lambda: build_causal_lm(TINY_LM, tokenizer=small_tokenizer, seed=1)  # noqa: E731
    recipe = dict(epochs=3, lr=3e-3, batch_size=8, seed=0, loss="jsd", temperature=2.0)
    reference = fresh()
    log = distill_causal_lm(reference, reader, **recipe)
    slot = Checkpoint(tmp_path / "student.pt", name="student", every_seconds=0)
    distill_causal_lm(fresh(), reader, **recipe, checkpoint=slot)
    resumed = fresh()
    assert distill_causal_lm(resumed, reader, **recipe, checkpoint=slot) == log
    assert _max_diff(_weights(resumed), _weights(reference)) == 0.0
