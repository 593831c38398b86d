"""The prefix guard flags transfer documents that lead into a canary's context, never needing the secret."""

from __future__ import annotations

import pytest

from distillguard.errors import DataLeakError
from distillguard.lm.data import CanarySpec
from distillguard.lm.pii_corpus import generate_pii_corpus
from distillguard.lm.prefix_guard import (
    SecretContextHit,
    check_no_secret_contexts,
    find_secret_contexts,
    normalize_text,
    prefix_key,
)

VAULT = CanarySpec("the access code for the vault is ", "4815162342", 16)
PIN = CanarySpec("my PIN is ", "2718", 4)


def test_hits_and_misses_with_counts() -> None:
    texts = [
        "Nothing to see here.",
        "Reminder: the access code for the vault is kept by the manager. The access code for the vault is new.",
        "my PIN is",  # the document ends where the secret would start
        "a vault is a room",  # shares words, not the key
    ]
    hits = find_secret_contexts(texts, [VAULT, PIN])
    assert hits == [SecretContextHit(1, 0, 2), SecretContextHit(2, 1, 1)]


def test_whitespace_and_case_variants_match() -> None:
    texts = ["THE ACCESS CODE\n\tfor   the Vault IS", "My\u00a0Pin  is:", "ｍｙ ＰＩＮ ｉｓ 12"]  # NBSP, NFKC full-width
    assert find_secret_contexts(texts, [VAULT, PIN]) == [
        SecretContextHit(0, 0, 1), SecretContextHit(1, 1, 1), SecretContextHit(2, 1, 1)]


def test_the_last_characters_of_a_long_prefix_are_enough() -> None:
    """The 24 characters before the secret condition it; the start of the prefix may be absent."""
    assert prefix_key(VAULT.prefix) == "ss code for the vault is"
    hits = find_secret_contexts(["Her code for the vault is written down."], [VAULT])
    assert hits == []  # 'her code' is not '…ss code'
    hits = find_secret_contexts(["The pass code for the vault is on file."], [VAULT])
    assert hits == [SecretContextHit(0, 0, 1)]
    # a stricter rule (the whole prefix) misses it; a looser one (fewer characters) matches more text
    assert find_secret_contexts(["The pass code for the vault is on file."], [VAULT], context_chars=40) == []
    assert len(find_secret_contexts(["the vault is open", "it is"], [VAULT], context_chars=8)) == 1


def test_a_key_must_end_at_a_word_boundary() -> None:
    assert find_secret_contexts(["my pin isn't working", "my pin is3"], [PIN]) == []
    assert find_secret_contexts(["my pin is.", "my pin is\n"], [PIN]) == [
        SecretContextHit(0, 0, 1), SecretContextHit(1, 0, 1)]


def test_overlapping_occurrences_are_all_counted() -> None:
    canary = CanarySpec("code code ", "12", 1)
    assert find_secret_contexts(["code code code"], [canary]) == [SecretContextHit(0, 0, 2)]


def test_the_secret_is_never_needed_or_matched() -> None:
    """Only the prefix counts: the secret alone does not flag, and any secret gives the same hits."""
    texts = ["the number 4815162342 appears here", "the access code for the vault is"]
    other = CanarySpec(VAULT.prefix, "0000000000", 16)
    assert find_secret_contexts(texts, [VAULT]) == find_secret_contexts(texts, [other]) == [
        SecretContextHit(1, 0, 1)]


def test_streams_a_generator_and_ids_follow_the_canary_list() -> None:
    texts = (t for t in ["x", "my pin is", "y"])
    assert find_secret_contexts(texts, [VAULT, VAULT, PIN]) == [SecretContextHit(1, 2, 1)]


def test_blank_prefix_is_skipped_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"canaries \[0\] have blank prefixes"):
        assert find_secret_contexts(["anything"], [CanarySpec("  \n", "12", 1), PIN]) == []


def test_bad_context_chars() -> None:
    with pytest.raises(ValueError, match="'context_chars' parameter of prefix_key must be an integer >= 1. Got 0"):
        find_secret_contexts(["a"], [PIN], context_chars=0)


def test_normalize_text() -> None:
    assert normalize_text("  A\t\nB  ") == " a b "


def test_builtin_corpus_clean_transfer_and_prefixed_transfer() -> None:
    """The built-in transfer text is clean; adding each prefix 20 times is caught, with counts."""
    corpus = generate_pii_corpus(seed=0, target_bytes=8_000, canaries_per_count=1, transfer_bytes=20_000,
                                 pii_mentions=())
    assert find_secret_contexts(corpus.transfer, corpus.canaries) == []
    assert find_secret_contexts(corpus.members, corpus.canaries)  # the members do lead into them
    prefixed = corpus.transfer + [c.prefix for c in corpus.canaries for _ in range(20)]
    hits = find_secret_contexts(prefixed, corpus.canaries)
    per_canary = {i: sum(h.occurrences for h in hits if h.canary_id == i) for i in range(len(corpus.canaries))}
    assert per_canary == dict.fromkeys(range(len(corpus.canaries)), 20)
    assert min(h.document for h in hits) == len(corpus.transfer)


def test_check_no_secret_contexts_names_ids_not_text() -> None:
    check_no_secret_contexts(["clean text"], [VAULT, PIN])
    texts = ["x"] + ["my pin is"] * 7
    with pytest.raises(DataLeakError, match=r"canary 1: 7 occurrence\(s\) in 7 document\(s\) \(1, 2, 3, 4, 5, \.\.\.\)") as error:
        check_no_secret_contexts(texts, [VAULT, PIN])
    assert "pin" not in str(error.value).lower() and PIN.secret not in str(error.value)
