"""The exchangeability checks: tables (features) and text (the LM audit)."""

from __future__ import annotations

import random

import numpy as np

from distillguard.audit.exchangeability import text_distinguishability_auc, text_exchangeability_check

WORDS = ("order refund parcel delay invoice account login password billing address shipping update "
         "thanks please today tomorrow week month reply issue ticket support team").split()
NAMES = [f"Customer{i:03d} {last}" for i, last in enumerate(("Lee", "Wu", "Ng", "Roe") * 50)]  # 200 people


def _docs(rng: random.Random, n: int, *, people: list[str], extra: str = "") -> list[str]:
    """``n`` support notes; each person of ``people`` gets several of them (a per-person split)."""
    return [f"Ticket from {rng.choice(people)}: " + " ".join(rng.choice(WORDS) for _ in range(20)) + extra
            for _ in range(n)]


def test_same_kind_of_text_is_exchangeable_even_when_split_by_person():
    """Members and nonmembers are different people (each in ~4 documents) but the same kind of text."""
    rng = random.Random(0)
    members = _docs(rng, 400, people=NAMES[:100])
    nonmembers = _docs(rng, 400, people=NAMES[100:])
    is_member = np.r_[np.ones(400, bool), np.zeros(400, bool)]
    record, warning = text_exchangeability_check(members + nonmembers, is_member, seed=0)
    assert warning is None and abs(record["auc"] - 0.5) < 0.06, record
    # rare terms (the names) would link a document to its labelled siblings; the 2% floor drops them
    assert text_distinguishability_auc(members + nonmembers, is_member, seed=0, min_df=1) > 0.75


def test_a_shift_in_kind_is_flagged():
    rng = random.Random(1)
    members = _docs(rng, 200, people=NAMES)
    nonmembers = _docs(rng, 200, people=NAMES, extra=" Sent from my phone.")
    is_member = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    record, warning = text_exchangeability_check(members + nonmembers, is_member, seed=0)
    assert record["auc"] > 0.9 and warning is not None and "distinguishable from their text alone" in warning
    assert record["warn_above"] == 0.6 and "TF-IDF" in record["method"]


def test_documents_cut_from_one_source_stay_in_one_fold():
    """Passages of one article share its story's words: split across folds, a classifier links a held-out passage
    to its labelled siblings (a false shift); kept in one fold, the check sees the same kind of text."""
    rng = random.Random(2)
    stories = [[f"story{s}word{w}" for w in range(6)] for s in range(40)]  # each story's own vocabulary
    texts, groups = [], []
    for s, story in enumerate(stories):
        for _ in range(10):  # ten passages per story: its words pass the 2 % floor
            texts.append(" ".join(rng.choice(WORDS) for _ in range(15)) + " " + " ".join(rng.sample(story, 6)))
            groups.append(f"article-{s}")
    is_member = np.array([s < 20 for s in range(40) for _ in range(10)])  # split by story, as news-pii is
    assert text_distinguishability_auc(texts, is_member, seed=0) > 0.9  # the false alarm
    record, warning = text_exchangeability_check(texts, is_member, seed=0, groups=groups)
    assert warning is None and record["auc"] < 0.6 and "grouped: 40 document groups" in record["method"]
