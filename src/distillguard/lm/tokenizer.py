"""A byte-level BPE tokenizer fitted on public (transfer) text only, and the secret check.

A tokenizer fitted on the private corpus can learn a secret that occurs often as one
vocabulary token; the tokenizer file then discloses it to anyone who ships or reads it,
whatever the model does (REFERENCES.md, Language-model memorization). So
:func:`train_bpe_tokenizer` takes the public text only, and
:func:`check_secrets_not_in_vocab` verifies that no canary secret, nor a piece of one of
four or more characters, became a token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from distillguard.errors import ArtifactError, DataLeakError
from distillguard.lm.data import CanarySpec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def train_bpe_tokenizer(
    public_texts: Iterable[str], *, vocab_size: int = 2048, min_frequency: int = 2
) -> PreTrainedTokenizerBase:
    """Fit a GPT-2-style byte-level BPE on public text (never on members/nonmembers/test).

    Byte-level means every string is encodable (no unknown token), so the private text
    needs no say in the vocabulary. The two special tokens are ``<|endoftext|>`` (id 0;
    used as EOS and BOS and as the document separator) and ``<|pad|>`` (id 1).

    Args:
        public_texts: the transfer/public corpus only.
        vocab_size: final vocabulary size, special tokens and the 256 byte symbols included.
        min_frequency: a merge needs this many occurrences.

    Returns:
        A fast Hugging Face tokenizer (``PreTrainedTokenizerFast``) with eos/bos/pad set.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 258:
        raise ValueError("The 'vocab_size' parameter of train_bpe_tokenizer must be >= 258 "
                         f"(256 bytes + 2 special tokens). Got {vocab_size!r} instead.")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator(public_texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN,
                                   pad_token=PAD_TOKEN)


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> None:
    """Write the tokenizer files into ``folder`` (``tokenizer.json``, ``tokenizer_config.json``).

    The config names the class ``PreTrainedTokenizerFast`` (what transformers 4.x reads;
    5.x maps it to its tokenizers backend), so the folder loads with a plain
    ``AutoTokenizer.from_pretrained(folder)`` in both.
    """
    folder = Path(folder)
    tokenizer.save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer folder without touching the network.

    Raises:
        ArtifactError: the folder is missing or holds no tokenizer files.
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        raise ArtifactError(f"{folder}: no tokenizer.json or tokenizer_config.json; "
                            "expected a Hugging Face tokenizer folder")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def token_strings(tokenizer: PreTrainedTokenizerBase) -> dict[int, str]:
    """Every vocabulary id → its decoded text (byte-level symbols mapped back to characters)."""
    return {i: tokenizer.convert_tokens_to_string([tok]) for tok, i in tokenizer.get_vocab().items()}


def check_secrets_not_in_vocab(
    tokenizer: PreTrainedTokenizerBase, secrets: Sequence[str | CanarySpec], *, min_chars: int = 4
) -> None:
    """Refuse a tokenizer whose vocabulary holds a secret or a piece of one.

    A token is a piece when, without its one leading space (byte-level BPE glues the
    space before a word to it), it has ``min_chars`` or more characters and occurs inside
    the secret; a token equal to the whole secret is flagged at any length. Shorter
    pieces (like a 3-digit number) are common in any text and give little away.

    Args:
        tokenizer: the tokenizer to check.
        secrets: the canaries (or their secrets), index = canary id (0-based file line).
        min_chars: the shortest piece that counts.

    Raises:
        DataLeakError: naming every offending canary id and token id, never the secret.
    """
    strings = token_strings(tokenizer)
    found: list[str] = []
    for canary_id, item in enumerate(secrets):
        secret = item.secret if isinstance(item, CanarySpec) else item
        hits = []
        for token_id, text in strings.items():
            core = text[1:] if text.startswith(" ") else text
            if core == secret or (len(core) >= min_chars and core in secret):
                hits.append(f"token {token_id} ({len(core)} characters)")
        if hits:
            found.append(f"canary {canary_id}: " + ", ".join(sorted(hits)))
    if found:
        raise DataLeakError(
            "the tokenizer's vocabulary contains canary secrets or pieces of them (" + "; ".join(found) + "; "
            "canary ids are 0-based lines of the canaries file): the tokenizer file would disclose them; "
            "fit the tokenizer on the public/transfer text only"
        )


def digit_token_mask(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """(V,) bool: the vocabulary tokens whose text holds a decimal digit (0-9).

    What ``[distill] hard_tokens = "digits"`` learns from the transfer text itself
    rather than from the teacher (:func:`distillguard.lm.losses.hard_token_targets`).
    """
    import torch

    strings = token_strings(tokenizer)
    mask = torch.zeros(max(strings) + 1, dtype=torch.bool)
    for token_id, text in strings.items():
        mask[token_id] = any(ch in "0123456789" for ch in text)
    return mask
