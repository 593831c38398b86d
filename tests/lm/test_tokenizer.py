"""The public-text BPE tokenizer, its folder format, the secret check and token blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.errors import ArtifactError, DataLeakError
from distillguard.lm.blocks import encode_blocks, iter_token_blocks
from distillguard.lm.data import CanarySpec
from distillguard.lm.tokenizer import (
    EOS_TOKEN,
    PAD_TOKEN,
    check_secrets_not_in_vocab,
    load_tokenizer,
    save_tokenizer,
    train_bpe_tokenizer,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tokenizer_folder_loads_with_auto_tokenizer(tmp_path: Path, small_tokenizer) -> None:
    from transformers import AutoTokenizer

    save_tokenizer(small_tokenizer, tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(loaded) == len(small_tokenizer) == 512
    assert (loaded.eos_token, loaded.pad_token) == (EOS_TOKEN, PAD_TOKEN)
    assert (loaded.eos_token_id, loaded.pad_token_id) == (0, 1)
    text = "Review: naïve café, 4 out of 5 — 東京 ✓"
    assert loaded.decode(loaded(text)["input_ids"]) == text  # byte-level: no unknown token
    assert load_tokenizer(tmp_path).get_vocab() == small_tokenizer.get_vocab()


def test_missing_tokenizer_folder(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)


def test_training_is_deterministic(small_corpus, small_tokenizer) -> None:
    again = train_bpe_tokenizer(small_corpus.transfer, vocab_size=512)
    assert again.get_vocab() == small_tokenizer.get_vocab()


def test_builtin_secrets_are_not_vocabulary_tokens(default_corpus) -> None:
    tokenizer = train_bpe_tokenizer(default_corpus.transfer)  # fitted on public text only
    assert len(tokenizer) == 2048
    check_secrets_not_in_vocab(tokenizer, default_corpus.canaries)  # raises if any piece is a token
    for canary in default_corpus.canaries:  # and each secret is spelled with several tokens
        assert len(tokenizer(" " + canary.secret, add_special_tokens=False)["input_ids"]) >= 3


def test_tokenizer_fitted_on_private_text_is_flagged(small_corpus) -> None:
    """The reason we fit on public text: 16 copies of a secret become vocabulary tokens."""
    # canary 1 is a control no token spells (the transfer text's numbers make 2-digit tokens)
    canaries = [CanarySpec("my PIN is ", "58206193", 16), CanarySpec("the code is ", "qzxj", 1, "jqxz")]
    private = [f"note {i}: my PIN is 58206193, keep it safe" for i in range(16)]
    tokenizer = train_bpe_tokenizer(small_corpus.transfer + private, vocab_size=2048)
    with pytest.raises(DataLeakError, match=r"canary 0: token \d+ \(\d characters\)") as info:
        check_secrets_not_in_vocab(tokenizer, canaries)
    message = str(info.value)
    assert "58206193" not in message and "canary 1" not in message  # never print the secret
    assert "fit the tokenizer on the public/transfer text only" in message


def test_short_pieces_are_not_flagged(small_tokenizer) -> None:
    vocab = {small_tokenizer.convert_tokens_to_string([t]) for t in small_tokenizer.get_vocab()}
    three = next(t.strip() for t in vocab if len(t.strip()) == 3 and t.strip().isalpha())
    check_secrets_not_in_vocab(small_tokenizer, [three + "zzqx"])  # a 3-character piece is fine
    with pytest.raises(DataLeakError, match="canary 0"):
        check_secrets_not_in_vocab(small_tokenizer, [three])  # the whole secret is a token


def test_blocks_pack_every_token(small_corpus, small_tokenizer) -> None:
    texts = small_corpus.members[:30]
    blocks = encode_blocks(small_tokenizer, texts, block_len=64)
    expected = sum(len(small_tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
    assert blocks.n_tokens == expected
    assert (blocks.lengths[:-1] == 64).all() and 0 < int(blocks.lengths[-1]) <= 64
    assert (blocks.ids[-1, int(blocks.lengths[-1]):] == small_tokenizer.pad_token_id).all()
    flat = blocks.ids[blocks.mask].tolist()
    assert small_tokenizer.decode(flat) == EOS_TOKEN.join(texts) + EOS_TOKEN


def test_blocks_stream_lazily(small_tokenizer) -> None:
    pulled = []

    def texts():
        for i in range(10_000):
            pulled.append(i)
            yield "lorem ipsum dolor sit amet " * 4

    stream = iter_token_blocks(small_tokenizer, texts(), block_len=32)
    next(stream)
    assert len(pulled) <= 256  # one encoding chunk, not the whole corpus
