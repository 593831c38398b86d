"""The prefix guard: flag transfer documents that lead into a canary's context.

A student trained on the teacher's soft labels over public text learns what the teacher
predicts *on that text*. If the transfer text contains a secret's prefix ("my PIN is"),
the teacher's top-k labels at the next position spell out the memorized secret, and the
student learns it without the secret ever appearing in the transfer text
(``benchmarks/bench_lm_transfer_leak.py`` measures this). A substring check for the secret
itself (the data-leak check) cannot see it; this guard looks for the *prefix*, so it never
needs the secret.

**The rule.** Both sides are normalised the same way: Unicode NFKC, case-folded, every run
of whitespace collapsed to one space. The key of a canary is the last ``context_chars``
characters (default 24) of its normalised prefix with trailing whitespace removed, or the
whole prefix if it is shorter. Why the *last* characters: a causal LM's prediction of the
secret is conditioned most by the tokens right before it, so a document that contains
only the end of a long prefix ("... code for the vault is") cues the secret nearly as well
as the full one, and must be flagged too; 24 characters is 5–6 English words, enough
context for a tiny or small LM to be in the memorized state, and long enough that
ordinary text rarely matches by chance. Why the trailing space is dropped: a byte-level
BPE glues the space before the secret to the secret's first token (``"is" "Ġ281"``), so the
context that conditions it ends with the last word of the prefix, and a document that
ends there (or continues with a newline) leads into the same state. A match counts only
where the key ends at a word boundary (``"my pin is"`` does not match ``"my pin isn't"``):
a longer word is another token, a different context.

The guard over-approximates (a match flags a document even if what follows it differs);
that is the safe side for a privacy check. It does not catch paraphrases ("the PIN of
mine is"); the exposure probe on the student is the end-to-end check.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from distillguard.errors import DataLeakError
from distillguard.lm.data import CanarySpec

DEFAULT_CONTEXT_CHARS = 24
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class SecretContextHit:
    """One transfer document that contains a canary's prefix (its last characters).

    Attributes:
        document: 0-based index of the document in the transfer texts.
        canary_id: 0-based line of the canaries file (index in ``canaries``).
        occurrences: how many times the prefix key occurs in the document.
    """

    document: int
    canary_id: int
    occurrences: int


def normalize_text(text: str) -> str:
    """NFKC, case-folded, whitespace runs collapsed to one space (the guard's view of text)."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold())


def prefix_key(prefix: str, *, context_chars: int = DEFAULT_CONTEXT_CHARS) -> str:
    """The string the guard searches for: the last ``context_chars`` characters of the
    normalised prefix, trailing whitespace removed ('' when the prefix is blank)."""
    if isinstance(context_chars, bool) or not isinstance(context_chars, int) or context_chars < 1:
        raise ValueError("The 'context_chars' parameter of prefix_key must be an integer >= 1. "
                         f"Got {context_chars!r} instead.")
    normalized = normalize_text(prefix).rstrip()
    return normalized[-context_chars:].lstrip()


def _pattern(key: str) -> re.Pattern[str]:
    """Overlapping occurrences of ``key``, ending at a word boundary when it ends in a word character."""
    boundary = r"(?!\w)" if re.match(r"\w", key[-1]) else ""
    return re.compile(f"(?=({re.escape(key)}{boundary}))")


def find_secret_contexts(
    transfer_texts: Iterable[str],
    canaries: Sequence[CanarySpec],
    *,
    context_chars: int = DEFAULT_CONTEXT_CHARS,
) -> list[SecretContextHit]:
    """Transfer documents that contain a canary's prefix (module docstring: the rule).

    Pure: reads only the prefixes, never the secrets, so it can run where the secrets are
    not available. Streams ``transfer_texts`` once (a generator over a large JSONL file is
    fine). A canary whose prefix is blank cannot be guarded (its secret follows any
    document start); it is skipped with a warning naming its id.

    Args:
        transfer_texts: the transfer documents, in file order.
        canaries: the canaries, index = canary id (0-based line of the canaries file).
        context_chars: how many of the prefix's last characters make the key.

    Returns:
        One :class:`SecretContextHit` per (document, canary) pair with at least one
        occurrence, ordered by document then canary id; empty for a clean transfer set.
    """
    keys = [(i, prefix_key(c.prefix, context_chars=context_chars)) for i, c in enumerate(canaries)]
    blank = [i for i, key in keys if not key]
    if blank:
        warnings.warn(f"canaries {blank} have blank prefixes, which the prefix guard cannot check", stacklevel=2)
    patterns = [(i, key, _pattern(key)) for i, key in keys if key]
    hits: list[SecretContextHit] = []
    for document, text in enumerate(transfer_texts):
        normalized = normalize_text(text)
        for canary_id, key, pattern in patterns:
            if key in normalized:  # cheap test first; the regex only counts
                count = sum(1 for _ in pattern.finditer(normalized))
                if count:
                    hits.append(SecretContextHit(document, canary_id, count))
    return hits


def check_no_secret_contexts(
    transfer_texts: Iterable[str],
    canaries: Sequence[CanarySpec],
    *,
    context_chars: int = DEFAULT_CONTEXT_CHARS,
    where: str = "the transfer text",
) -> None:
    """Refuse a transfer set that leads into canary contexts (for the label stage).

    Raises:
        DataLeakError: naming each offending canary id with its documents and counts
            (never a prefix or a secret), and the fix.
    """
    hits = find_secret_contexts(transfer_texts, canaries, context_chars=context_chars)
    if not hits:
        return
    by_canary: dict[int, list[SecretContextHit]] = {}
    for hit in hits:
        by_canary.setdefault(hit.canary_id, []).append(hit)
    parts = []
    for canary_id, found in sorted(by_canary.items()):
        documents = ", ".join(str(h.document) for h in found[:5]) + (", ..." if len(found) > 5 else "")
        parts.append(f"canary {canary_id}: {sum(h.occurrences for h in found)} occurrence(s) in "
                     f"{len(found)} document(s) ({documents})")
    raise DataLeakError(
        f"{where} contains the prefixes of canaries ({'; '.join(parts)}; canary ids are 0-based lines of "
        "the canaries file, documents 0-based): the teacher's soft labels after a prefix can teach the "
        "student the memorized secret; remove those documents from the transfer text"
    )
