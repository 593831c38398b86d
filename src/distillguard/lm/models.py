"""Tiny causal LMs (GPT-2 or Llama style) built from a config dict, saved as HF folders.

The model config is a small flat dict (later a typed ``[teacher]``/``[student]`` section):
``kind`` (``"gpt2"`` or ``"llama"``), ``n_layer``, ``n_embd``, ``n_head``, ``n_positions``,
``n_inner`` (MLP width, default 4·n_embd), ``dropout`` (default 0: the teacher is meant to
memorize, and dropout would add a second random stream) and ``tie_embeddings``. The
vocabulary always comes from the tokenizer, never from the config, so teacher, student and
soft labels cannot disagree about it silently.

Folders written by :func:`save_causal_lm` hold ``config.json``, ``model.safetensors``,
``generation_config.json`` and the tokenizer files, and load with plain
``AutoModelForCausalLM.from_pretrained(folder)`` / ``AutoTokenizer.from_pretrained(folder)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from distillguard import device
from distillguard.errors import ArtifactError, ConfigError
from distillguard.lm.tokenizer import load_tokenizer, save_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MODEL_KINDS = ("gpt2", "llama")
DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "kind": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 128,
    "n_inner": None, "dropout": 0.0, "tie_embeddings": True,
}


def resolve_model_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every value checked; all problems reported at once.

    Raises:
        ConfigError: unknown keys, unknown ``kind``, non-positive sizes, ``n_embd`` not a
            multiple of ``n_head``, dropout outside [0, 1).
    """
    errors = []
    unknown = sorted(set(config) - set(DEFAULT_MODEL_CONFIG))
    if unknown:
        errors.append(f"unknown key(s) {unknown}; valid keys are {sorted(DEFAULT_MODEL_CONFIG)}")
    cfg = {**DEFAULT_MODEL_CONFIG, **{k: v for k, v in config.items() if k in DEFAULT_MODEL_CONFIG}}
    if cfg["kind"] not in MODEL_KINDS:
        errors.append(f"'kind' must be one of {list(MODEL_KINDS)}, got {cfg['kind']!r}")
    for key in ("n_layer", "n_embd", "n_head", "n_positions"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            errors.append(f"'{key}' must be a positive integer, got {cfg[key]!r}")
    if cfg["n_inner"] is not None and (not isinstance(cfg["n_inner"], int) or cfg["n_inner"] < 1):
        errors.append(f"'n_inner' must be a positive integer or None, got {cfg['n_inner']!r}")
    if not isinstance(cfg["dropout"], int | float) or not 0.0 <= cfg["dropout"] < 1.0:
        errors.append(f"'dropout' must be in [0, 1), got {cfg['dropout']!r}")
    if not errors and cfg["n_embd"] % cfg["n_head"]:
        errors.append(f"'n_embd' ({cfg['n_embd']}) must be a multiple of 'n_head' ({cfg['n_head']})")
    if errors:
        raise ConfigError("model config: " + "; ".join(errors))
    return cfg


def build_causal_lm(config: Mapping[str, Any], *, tokenizer: PreTrainedTokenizerBase, seed: int) -> PreTrainedModel:
    """A freshly initialized causal LM; a pure function of (config, tokenizer size, seed).

    Initialization draws from torch's global generator inside ``fork_rng``, seeded with
    ``seed``, so the caller's random state is untouched and the same seed gives the same
    weights.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    cfg = resolve_model_config(config)
    vocab = len(tokenizer)
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    inner = cfg["n_inner"] or 4 * cfg["n_embd"]
    if cfg["kind"] == "gpt2":
        p = cfg["dropout"]
        hf_config = GPT2Config(vocab_size=vocab, n_positions=cfg["n_positions"], n_embd=cfg["n_embd"],
                               n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_inner=inner, resid_pdrop=p,
                               embd_pdrop=p, attn_pdrop=p, tie_word_embeddings=cfg["tie_embeddings"], **special)
        model_class = GPT2LMHeadModel
    else:
        hf_config = LlamaConfig(vocab_size=vocab, hidden_size=cfg["n_embd"], intermediate_size=inner,
                                num_hidden_layers=cfg["n_layer"], num_attention_heads=cfg["n_head"],
                                num_key_value_heads=cfg["n_head"], max_position_embeddings=cfg["n_positions"],
                                attention_dropout=cfg["dropout"], tie_word_embeddings=cfg["tie_embeddings"], **special)
        model_class = LlamaForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(hf_config)  # initialized on the CPU: the same weights whatever the device
    return model.to(device.current())


def context_length(model: PreTrainedModel) -> int:
    """The longest block the model accepts (``n_positions`` / ``max_position_embeddings``)."""
    config = model.config
    return int(getattr(config, "n_positions", None) or config.max_position_embeddings)


def save_causal_lm(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> None:
    """Write a Hugging Face folder: config, ``model.safetensors``, tokenizer files.

    transformers 5 always writes safetensors (its ``safe_serialization`` flag is gone);
    the check below keeps that promise if a version ever falls back to pickles. Under
    torchrun transformers writes the weights on rank 0 only; the other ranks build into
    scratch folders (stages/common.py) that later steps of a stage may read, so they
    write the same weights themselves.
    """
    from distillguard import distributed

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    if not distributed.world().is_main and not any(folder.glob("*.safetensors")):
        from safetensors.torch import save_model

        save_model(model, str(folder / "model.safetensors"))
    if not any(folder.glob("*.safetensors")):
        raise ArtifactError(f"{folder}: save_pretrained wrote no .safetensors file; refusing a pickle checkpoint")
    tokenizer.model_max_length = context_length(model)
    save_tokenizer(tokenizer, folder)


def load_causal_lm(folder: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model folder (ours or any local Hugging Face causal LM) and its tokenizer.

    Raises:
        ArtifactError: missing folder, config or weights.
    """
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ArtifactError(f"{folder}: no config.json; expected a Hugging Face model folder "
                            "(config.json, model.safetensors, tokenizer files)")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ArtifactError(f"{folder}: no weights (model.safetensors); the folder is incomplete")
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).to(device.current())
    model.eval()
    return model, load_tokenizer(folder)


def check_same_tokenizer(
    teacher_tokenizer: PreTrainedTokenizerBase, student_tokenizer: PreTrainedTokenizerBase
) -> None:
    """Refuse a teacher/student pair whose vocabularies differ.

    Soft labels are stored as teacher token ids; read with another vocabulary they would
    teach the student the wrong tokens without any error.

    Raises:
        ConfigError: naming both vocabulary sizes (or the count of differing tokens) and the fix.
    """
    fix = ("the student must use the teacher's tokenizer: build it with "
           "build_causal_lm(..., tokenizer=teacher_tokenizer) and save that tokenizer with it")
    teacher_size, student_size = len(teacher_tokenizer), len(student_tokenizer)
    if teacher_size != student_size:
        raise ConfigError(f"the teacher's vocabulary has {teacher_size} tokens but the student's has "
                          f"{student_size}; {fix}")
    teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    differ = sum(1 for tok, i in teacher_vocab.items() if student_vocab.get(tok) != i)
    if differ:
        raise ConfigError(f"the teacher's and student's vocabularies both have {teacher_size} tokens but "
                          f"{differ} of them map to different ids; {fix}")


def check_vocab_size(model: PreTrainedModel, vocab_size: int, *, what: str) -> None:
    """Refuse a model whose output layer does not match ``vocab_size`` (of ``what``).

    Raises:
        ConfigError: naming both sizes and the fix.
    """
    size = int(model.get_output_embeddings().weight.shape[0])
    if size != vocab_size:
        raise ConfigError(f"the model outputs {size} token scores but {what} has a vocabulary of {vocab_size}; "
                          "build the model with build_causal_lm(..., tokenizer=<the teacher's tokenizer>)")
