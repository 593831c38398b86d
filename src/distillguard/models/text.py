"""Hugging Face sequence classifiers on fixed-length token-id rows (``kind = "hf-text"``).

A text record is encoded once into a row of ``max_length`` token ids (the tokenizer's own
special tokens, then the text, truncated, right-padded with the pad id), so the classifier
pipeline treats it like a numeric row. :class:`HFTextClassifier` wraps an
``AutoModelForSequenceClassification``: its ``forward(ids)`` takes those rows (float or
integer ids), builds the attention mask from the pad id and returns the logits.

Models built here are GPT-2 or Llama style (``[teacher.arch] family``), which classify from
the last non-pad token: with right padding and causal attention, pad positions cannot
change the logits. Folders written by :func:`save_hf_text_classifier` load with plain
``AutoModelForSequenceClassification.from_pretrained`` and ``AutoTokenizer.from_pretrained``.

For callers outside the pipeline (``distillguard scan``): :func:`load_hf_text_classifier`
(a local folder to a module taking token-id rows, plus its tokenizer) and
:func:`encode_texts` (texts to the (n, max_length) id matrix the module takes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from distillguard.errors import ArtifactError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

KIND = "hf-text"


class HFTextClassifier(nn.Module):
    """(B, L) token-id rows → (B, C) logits; the attention mask is ``ids != pad_id``."""

    def __init__(self, hf_model: PreTrainedModel, *, pad_id: int) -> None:
        super().__init__()
        self.hf = hf_model
        self.pad_id = int(pad_id)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.round().long() if x.is_floating_point() else x.long()
        mask = (ids != self.pad_id).long()
        return self.hf(input_ids=ids, attention_mask=mask).logits


def text_architecture(arch_cfg: Any, *, max_length: int, n_classes: int, vocab_size: int, pad_id: int,
                      bos_id: int | None = None) -> dict:
    """The JSON-able architecture of a fresh model (``arch_cfg``: a ``[teacher.arch]`` section)."""
    return {"kind": KIND, "input_shape": [int(max_length)], "n_classes": int(n_classes),
            "hf": {"family": arch_cfg.family, "layers": arch_cfg.layers, "width": arch_cfg.width,
                   "heads": arch_cfg.heads, "mlp_width": arch_cfg.mlp_width, "dropout": arch_cfg.dropout,
                   "vocab_size": int(vocab_size), "pad_id": int(pad_id), "bos_id": bos_id}}


def _hf_config(arch: dict):
    from transformers import GPT2Config, LlamaConfig

    hf, n = arch["hf"], int(arch["input_shape"][0])
    inner = hf["mlp_width"] or 4 * hf["width"]
    common = {"vocab_size": hf["vocab_size"], "pad_token_id": hf["pad_id"], "num_labels": arch["n_classes"],
              "bos_token_id": hf.get("bos_id"), "eos_token_id": hf.get("bos_id")}
    if hf["family"] == "llama":
        return LlamaConfig(hidden_size=hf["width"], intermediate_size=inner, num_hidden_layers=hf["layers"],
                           num_attention_heads=hf["heads"], num_key_value_heads=hf["heads"],
                           max_position_embeddings=n, attention_dropout=hf["dropout"], **common)
    p = hf["dropout"]
    return GPT2Config(n_embd=hf["width"], n_layer=hf["layers"], n_head=hf["heads"], n_inner=inner, n_positions=n,
                      resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, summary_first_dropout=p, **common)


def build_text_classifier(arch: dict) -> HFTextClassifier:
    """A freshly initialized model from torch's global generator (the caller seeds and forks it)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(_hf_config(arch))
    return HFTextClassifier(model, pad_id=arch["hf"]["pad_id"])


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, max_length: int) -> np.ndarray:
    """(n, max_length) int32 token ids: the tokenizer's special tokens, truncation, right padding."""
    if tokenizer.pad_token_id is None:
        raise ArtifactError("the tokenizer has no pad token; expected one (set tokenizer.pad_token)")
    if not len(texts):
        return np.zeros((0, max_length), dtype=np.int32)
    batch = tokenizer(list(texts), truncation=True, max_length=max_length, padding="max_length")
    return np.asarray(batch["input_ids"], dtype=np.int32)


def save_hf_text_classifier(model: HFTextClassifier, tokenizer: PreTrainedTokenizerBase, folder: Path, *,
                            classes: Sequence) -> None:
    """``save_pretrained`` of the model (safetensors, labels named) and the tokenizer into ``folder``."""
    from distillguard.lm.tokenizer import save_tokenizer

    hf = model.hf
    hf.config.id2label = {i: str(c) for i, c in enumerate(classes)}
    hf.config.label2id = {str(c): i for i, c in enumerate(classes)}
    hf.save_pretrained(str(folder), safe_serialization=True)
    save_tokenizer(tokenizer, folder)


def load_hf_text_classifier(folder: str | Path) -> tuple[HFTextClassifier, PreTrainedTokenizerBase]:
    """A local Hugging Face sequence-classifier folder → (eval-mode module taking token-id rows, tokenizer).

    Raises:
        ArtifactError: the folder is not a sequence classifier with a tokenizer (one line).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ArtifactError(f"{folder}: no config.json; expected a Hugging Face sequence-classifier folder")
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        hf = AutoModelForSequenceClassification.from_pretrained(str(folder), local_files_only=True,
                                                                use_safetensors=True)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(f"{folder}: not a loadable Hugging Face sequence classifier ({first})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if getattr(config, "pad_token_id", None) is None:
        hf.config.pad_token_id = tokenizer.pad_token_id
    model = HFTextClassifier(hf, pad_id=tokenizer.pad_token_id)
    model.eval()
    return model, tokenizer
