"""DP synthetic transfer text: the DP generator's samples, through the guards any transfer text passes.

The text counterpart of :mod:`distillguard.data.synthetic_transfer`: draw ``rows``
documents from the DP-SGD generator (:mod:`distillguard.lm.dp_generator`), drop every
empty one, every one the text leak guard flags as an exact or near copy of a member or
nonmember document (:func:`~distillguard.data.leakguard_text.find_text_leaks`), and every
one that holds a canary's prefix (:func:`~distillguard.lm.prefix_guard.find_secret_contexts`),
and draw the shortfall again until ``rows`` pass. Sampling spends no budget; the guards' drops are
decided by comparing with the private text, a data-dependent filter outside the
generator's ε (as in the classifier track), which the record counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from distillguard.data.leakguard_text import find_text_leaks
from distillguard.errors import DataError
from distillguard.lm.data import CanarySpec
from distillguard.lm.prefix_guard import find_secret_contexts
from distillguard.seeding import derive_seed

MAX_DRAWS = 8  # rounds of `rows` samples before giving up on a generator that mostly copies


@dataclass(frozen=True)
class SyntheticText:
    """``rows`` guarded synthetic documents and what the guards did (counts only, never a text)."""

    texts: list[str]
    record: dict


def guarded_synthetic_text(draw: Callable[[int, int], list[str]], *, rows: int, private: dict[str, list[str]],
                           canaries: list[CanarySpec], jaccard: float, seed: int) -> SyntheticText:
    """Draw with ``draw(n, seed)`` and guard until ``rows`` documents pass (each round draws the shortfall).

    Args:
        draw: ``(n, seed) -> n`` sampled documents (the DP generator's sampler).
        private: ``"members"`` / ``"nonmembers"`` -> documents no synthetic one may copy.
        canaries: their prefixes may not occur in a kept document.
        jaccard: ``[data] text_leak_jaccard``.

    Raises:
        DataError: fewer than ``rows`` passed after :data:`MAX_DRAWS` rounds.
    """
    kept: list[str] = []
    counts = {"drawn": 0, "dropped_empty": 0, "dropped_copies": 0, "dropped_exact": 0, "dropped_prefix": 0}
    for round_ in range(MAX_DRAWS):  # each round draws what is still missing
        texts = draw(rows - len(kept), derive_seed(seed, "synthetic-text", "sample", round_))
        counts["drawn"] += len(texts)
        drawn = len(texts)
        texts = [t for t in texts if t.strip()]
        counts["dropped_empty"] += drawn - len(texts)
        leaks = find_text_leaks(texts, private, jaccard_threshold=jaccard, seed=seed)
        copied = {int(i) for i in leaks.transfer_rows}
        counts["dropped_copies"] += len(copied)
        counts["dropped_exact"] += int(leaks.n_exact)
        texts = [t for i, t in enumerate(texts) if i not in copied]
        prefixed = {h.document for h in find_secret_contexts(texts, canaries)} if canaries else set()
        counts["dropped_prefix"] += len(prefixed)
        kept += [t for i, t in enumerate(texts) if i not in prefixed]
        if len(kept) >= rows:
            break
    if len(kept) < rows:
        raise DataError(f"[transfer.synthetic]: only {len(kept)} of rows = {rows} synthetic documents passed the "
                        f"guards in {counts['drawn']} drawn ({counts['dropped_empty']} empty, "
                        f"{counts['dropped_copies']} copies of private documents, {counts['dropped_prefix']} with a "
                        "canary's prefix); lower rows, or epsilon (a noisier generator copies less)")
    return SyntheticText(kept[:rows], {"rows": rows, **counts,
                                       "guards": "text leak guard (members, nonmembers) and prefix guard; "
                                                 "flagged documents dropped and drawn again"})
