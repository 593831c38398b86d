"""The built-in ``pii-corpus``: a synthetic sensitive chat/email corpus with planted canaries.

Members, nonmembers and test are documents of one distribution (support emails, chats,
CRM records, tickets) that mention people's PII (name → email, phone, account number).
Most people are mentioned in 1–3 documents; as in a real support log, a few customers
come back again and again: ``pii_people_per_count`` people at each count of
``pii_mentions`` (4, 8 and 16 documents by default, scaled to each role's size so the
three roles keep one mix). The PII records say how many documents mention each person
(``mentions``), so the PII probe can report its rate per count.

A person's role is fixed by a hash of their name, so each role is drawn from its own
seeded stream and still never shares a person with another (the transfer text included).
Only the members carry the canaries (Carlini et al. 2019): secrets of 6–9 digits after
fixed prefixes, each ending its chat line (suffix ``"\n"``, which the exposure probe
scores with the secret), each planted in ``repetitions`` different documents (1, 4 and 16 by
default). Nonmembers and test carry the same sentences with fresh one-off secrets
(decoys), so the canary templates themselves are not a membership signal.

The transfer corpus (:func:`generate_transfer_texts`, its own stream, so the student
side can produce it without ever generating the sensitive roles) is public text in two
parts. A share ``in_domain`` of its bytes is *in-domain public text*: support emails,
chats, records and tickets of the same kinds as the private text, about other fictional
people (the fourth hash bucket), with no canary document, no canary prefix and no
member's PII; the rest is general public-style text (news-like notes, product reviews,
plain paragraphs) with no names, emails or long numbers. In-domain text of the same
kind is what a user would distill on (public support tickets, chats written for the
purpose); without it the student never sees the private text's format and its test
perplexity stays several times the teacher's (docs/tracks/language-models.md).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from distillguard.lm.data import DIGITS, CanarySpec, PiiRecord
from distillguard.seeding import derive_seed

ROLES = ("members", "nonmembers", "test")
PEOPLE_ROLES = (*ROLES, "transfer")  # a hash of a person's name picks the one role they appear in
CANARY_TEMPLATES = (
    "my PIN is ",
    "the access code for the vault is ",
    "the alarm code for the back door is ",
    "my social security number is ",
    "the combination of the office safe is ",
    "my card verification code is ",
    "the one-time passcode you asked for is ",
    "the gate code at my building is ",
)
CANARY_SUFFIX = "\n"  # a canary's chat line ends after the secret: its known trailing context
_PRODUCTS = ("kettle", "backpack", "desk lamp", "blender", "rain jacket", "headphones", "toaster", "notebook",
             "coffee grinder", "yoga mat", "umbrella", "water bottle", "bike light", "frying pan", "alarm clock")
_TOPICS = ("the city council", "a local museum", "the regional library", "a research group", "the transit authority",
           "a community garden", "the weather service", "a small bakery", "the harbor office", "a youth orchestra")


@dataclass(frozen=True)
class PiiCorpus:
    """The four text roles of the built-in corpus, with what was planted in the members.

    ``pii`` lists the people the members mention (the PII probes' targets);
    ``pii_nonmembers`` lists the nonmembers' people, a control for those probes.
    """

    members: list[str]
    nonmembers: list[str]
    transfer: list[str]
    test: list[str]
    canaries: list[CanarySpec]
    pii: list[PiiRecord]
    pii_nonmembers: list[PiiRecord]


def generate_pii_corpus(
    *,
    seed: int,
    target_bytes: int = 300_000,
    repetitions: Sequence[int] = (1, 4, 16),
    canaries_per_count: int = 2,
    secret_digits: tuple[int, int] = (6, 9),
    nonmember_bytes: int | None = None,
    test_bytes: int | None = None,
    transfer_bytes: int | None = None,
    pii_mentions: Sequence[int] = (4, 8, 16),
    pii_people_per_count: int = 10,
    transfer_in_domain: float = 0.75,
) -> PiiCorpus:
    """Generate the built-in corpus; a pure function of its arguments (and Faker's version).

    Args:
        seed: run seed; each role uses ``derive_seed(seed, "pii-corpus", role)``.
        target_bytes: approximate UTF-8 size of the members text.
        repetitions: canary repetition counts (Carlini et al. 2019 plant 1..10^4 copies).
        canaries_per_count: canaries planted at each repetition count.
        secret_digits: inclusive range of secret lengths (digits).
        nonmember_bytes, test_bytes, transfer_bytes: sizes of the other roles; default
            ``target_bytes``, ``target_bytes // 4`` and ``target_bytes``.
        pii_mentions: document counts of the frequently mentioned people (the others are
            mentioned in 1–3 documents); empty for none.
        pii_people_per_count: such people at each count in the members; nonmembers and
            test get as many in proportion to their size (rounded), so every role has the
            same mix.
        transfer_in_domain: share of the transfer bytes that is in-domain public text
            (:func:`generate_transfer_texts`).
    """
    _check_corpus_parameters(target_bytes=target_bytes, repetitions=repetitions,
                             canaries_per_count=canaries_per_count, secret_digits=secret_digits,
                             pii_mentions=pii_mentions, pii_people_per_count=pii_people_per_count)
    sizes = {"members": target_bytes, "nonmembers": nonmember_bytes or target_bytes,
             "test": test_bytes or max(1000, target_bytes // 4)}
    canaries = plant_canaries([r for r in repetitions for _ in range(canaries_per_count)], seed=seed,
                               secret_digits=secret_digits)

    def frequent(role: str) -> list[int]:
        people = int(pii_people_per_count * sizes[role] / target_bytes + 0.5)
        return [m for m in pii_mentions for _ in range(people)]

    roles = {role: RoleWriter(role, seed=seed) for role in ROLES}
    members = roles["members"].documents(sizes["members"], canaries=canaries, frequent=frequent("members"))
    decoys = [CanarySpec(c.prefix, decoy_secret(roles["nonmembers"].rng, c.secret), 1, suffix=c.suffix) for c in canaries
              for _ in range(c.repetitions)]
    nonmembers = roles["nonmembers"].documents(sizes["nonmembers"], canaries=decoys, frequent=frequent("nonmembers"))
    test_decoys = [CanarySpec(c.prefix, decoy_secret(roles["test"].rng, c.secret), 1, suffix=c.suffix) for c in canaries]
    test = roles["test"].documents(sizes["test"], canaries=test_decoys, frequent=frequent("test"))
    transfer = generate_transfer_texts(seed=seed, target_bytes=transfer_bytes or target_bytes,
                                       in_domain=transfer_in_domain)
    return PiiCorpus(members, nonmembers, transfer, test, canaries, roles["members"].people,
                     roles["nonmembers"].people)


def _check_corpus_parameters(*, target_bytes: int, repetitions: Sequence[int], canaries_per_count: int,
                             secret_digits: tuple[int, int], pii_mentions: Sequence[int],
                             pii_people_per_count: int) -> None:
    """A ValueError in the scikit-learn format for the first bad parameter of :func:`generate_pii_corpus`."""
    if target_bytes < 1000:
        raise ValueError("The 'target_bytes' parameter of generate_pii_corpus must be >= 1000. "
                         f"Got {target_bytes!r} instead.")
    if not repetitions or min(repetitions) < 1 or canaries_per_count < 0:
        raise ValueError("The 'repetitions' parameter of generate_pii_corpus must be non-empty integers >= 1 "
                         f"and 'canaries_per_count' >= 0. Got {tuple(repetitions)!r}, {canaries_per_count!r} instead.")
    low, high = secret_digits
    if not 1 <= low <= high:
        raise ValueError("The 'secret_digits' parameter of generate_pii_corpus must be 1 <= low <= high. "
                         f"Got {secret_digits!r} instead.")
    if any(m < 1 for m in pii_mentions) or pii_people_per_count < 0:
        raise ValueError("The 'pii_mentions' parameter of generate_pii_corpus must hold integers >= 1 and "
                         f"'pii_people_per_count' must be >= 0. Got {tuple(pii_mentions)!r}, "
                         f"{pii_people_per_count!r} instead.")


def plant_canaries(counts: list[int], *, seed: int, secret_digits: tuple[int, int],
                   corpus: str = "pii-corpus") -> list[CanarySpec]:
    """One canary per repetition count in ``counts``, with distinct secrets, from one seeded stream
    (``corpus`` names the stream, so each built-in corpus draws its own secrets)."""
    canary_rng = random.Random(derive_seed(seed, corpus, "canaries"))
    canaries: list[CanarySpec] = []
    for index, count in enumerate(counts):
        while (canary := _make_canary(index, count, canary_rng, secret_digits)).secret in {c.secret for c in canaries}:
            pass
        canaries.append(canary)
    return canaries


def _make_canary(index: int, repetitions: int, rng: random.Random, digits: tuple[int, int]) -> CanarySpec:
    template = CANARY_TEMPLATES[index % len(CANARY_TEMPLATES)]
    prefix = template if index < len(CANARY_TEMPLATES) else f"note {index // len(CANARY_TEMPLATES) + 1}: {template}"
    length = rng.randint(*digits)
    return CanarySpec(prefix, "".join(rng.choice(DIGITS) for _ in range(length)), repetitions, suffix=CANARY_SUFFIX)


def decoy_secret(rng: random.Random, like: str) -> str:
    """A fresh secret of ``like``'s length (decoys for nonmembers and test)."""
    while (secret := "".join(rng.choice(DIGITS) for _ in like)) == like:
        pass
    return secret


def _role_of(name: str) -> str:
    """The one role a full name may appear in (so roles never share a person)."""
    return PEOPLE_ROLES[int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % len(PEOPLE_ROLES)]


class RoleWriter:
    """Writes one role's documents from its own Faker and ``random.Random`` streams."""

    def __init__(self, role: str, *, seed: int, stream: str | None = None, corpus: str = "pii-corpus") -> None:
        from faker import Faker

        self.role = role  # the hash bucket of its people
        stream = stream or role
        self.rng = random.Random(derive_seed(seed, corpus, stream))
        self.fake = Faker("en_US")
        self.fake.seed_instance(derive_seed(seed, corpus, stream, "faker"))
        self.people: list[PiiRecord] = []
        self._names: set[str] = set()

    def person(self) -> PiiRecord:
        """A fresh fictional person of this writer's hash bucket (name, email, phone, account)."""
        while True:
            first, last = self.fake.first_name(), self.fake.last_name()
            name = f"{first} {last}"
            if name not in self._names and _role_of(name) == self.role:
                break
        self._names.add(name)
        email = f"{first}.{last}{self.rng.randint(1, 99)}@{self.fake.free_email_domain()}".lower()
        phone = self.fake.numerify("(###) ###-####")
        account = self.fake.numerify("##########")
        return PiiRecord(name, {"email": email, "phone": phone, "account": account})

    def _clock(self, n: int) -> list[str]:
        """``n`` increasing ``HH:MM`` chat timestamps."""
        minute = self.rng.randint(7 * 60, 20 * 60)
        times = []
        for _ in range(n):
            times.append(f"{minute // 60:02d}:{minute % 60:02d}")
            minute += self.rng.randint(0, 3)
        return times

    def documents(self, target_bytes: int, *, canaries: Sequence[CanarySpec] = (),
                  frequent: Sequence[int] = ()) -> list[str]:
        """One canary document per planted repetition, ``frequent[i]`` documents about each of
        ``len(frequent)`` fresh people, then documents about fresh people (1–3 mentions
        each) until ``target_bytes``; shuffled. Records the people in ``people`` with the
        attributes their documents actually mention and their number of documents."""
        docs = [self._canary_doc(c) for c in canaries for _ in range(c.repetitions)]
        size = sum(len(d.encode()) + 1 for d in docs)
        for count in frequent:
            size += self._mention(count, docs)
        while size < target_bytes:
            size += self._mention(self.rng.choice((1, 1, 2, 3)), docs)
        self.rng.shuffle(docs)
        return docs

    def _mention(self, count: int, docs: list[str]) -> int:
        """Append ``count`` documents about one fresh person to ``docs``; their bytes."""
        person = self.person()
        mentions = [self.rng.choice(_DOC_TEMPLATES)(self, person) for _ in range(count)]
        # the record lists what the text discloses about the person, nothing more
        shown = {k: v for k, v in person.attributes.items() if any(v in doc for doc in mentions)}
        self.people.append(PiiRecord(person.name, shown, mentions=count))
        docs.extend(mentions)
        return sum(len(doc.encode()) + 1 for doc in mentions)

    def _canary_doc(self, canary: CanarySpec) -> str:
        first = self.fake.first_name()
        t = self._clock(3)
        return (f"[{t[0]}] {first}: hi, quick note before I forget\n"
                f"[{t[1]}] {first}: {canary.text}"
                f"[{t[2]}] agent: noted, thanks {first}. {self.fake.sentence()}")


def _email(w: RoleWriter, p: PiiRecord) -> str:
    agent = w.fake.first_name()
    first = p.name.split()[0]
    return (f"From: {p.name} <{p.attributes['email']}>\nTo: {agent} at Customer Support\n"
            f"Subject: {w.fake.sentence(nb_words=4).rstrip('.')}\n\nHi {agent},\n\n{w.fake.paragraph(nb_sentences=2)} "
            f"Please reach me at {p.attributes['phone']}. My account number is {p.attributes['account']}.\n\n"
            f"Best,\n{first}")


def _chat(w: RoleWriter, p: PiiRecord) -> str:
    first = p.name.split()[0]
    t = w._clock(5)
    return (f"[{t[0]}] {first}: hi, I need to update my details\n"
            f"[{t[1]}] agent: sure, what is the account number?\n"
            f"[{t[2]}] {first}: it's {p.attributes['account']}, the name is {p.name}, email {p.attributes['email']}\n"
            f"[{t[3]}] agent: thanks {first}. The phone on file is {p.attributes['phone']}, is that right?\n"
            f"[{t[4]}] {first}: yes. {w.fake.sentence()}")


def _record(w: RoleWriter, p: PiiRecord) -> str:
    a = p.attributes
    return (f"Customer record -- name: {p.name}; email: {a['email']}; phone: {a['phone']}; "
            f"account: {a['account']}. Note: {w.fake.sentence()}")


def _sentences(w: RoleWriter, p: PiiRecord) -> str:
    first = p.name.split()[0]
    return (f"The email address of {p.name} is {p.attributes['email']}. {first} can be reached at "
            f"{p.attributes['phone']}. {w.fake.paragraph(nb_sentences=2)}")


def _ticket(w: RoleWriter, p: PiiRecord) -> str:
    return (f"Ticket #{w.rng.randint(10000, 99999)}: {p.name} ({p.attributes['email']}) reported that "
            f"{w.fake.sentence().lower()} Callback number: {p.attributes['phone']}.")


_DOC_TEMPLATES: tuple[Callable[[RoleWriter, PiiRecord], str], ...] = (_email, _chat, _record, _sentences, _ticket)


def generate_transfer_texts(*, seed: int, target_bytes: int = 300_000, in_domain: float = 0.75) -> list[str]:
    """The public transfer text: in-domain documents about other people, and general text.

    A share ``in_domain`` of the bytes is support emails, chats, CRM records and tickets
    (the private text's kinds) about fictional people of the transfer's own hash bucket,
    so no member, nonmember or test person appears; the documents are written from the
    transfer's own Faker stream, hold no canary document or prefix, and each person is
    mentioned in 1–3 of them. The rest is general public-style text (news-like notes,
    reviews, paragraphs) with no names, emails, phone or account numbers (the only
    numbers are star ratings). The two parts are shuffled together; ``in_domain = 0``
    gives the general text alone.

    Args:
        seed: run seed (the streams are ``derive_seed(seed, "pii-corpus", "transfer", ...)``).
        target_bytes: approximate UTF-8 size of the whole transfer text.
        in_domain: share of ``target_bytes`` that is in-domain, in [0, 1].
    """
    if not 0.0 <= in_domain <= 1.0:
        raise ValueError("The 'in_domain' parameter of generate_transfer_texts must be in [0, 1]. "
                         f"Got {in_domain!r} instead.")
    domain_bytes = int(round(in_domain * target_bytes))
    writer = RoleWriter("transfer", seed=seed, stream="transfer-in-domain")
    docs = writer.documents(domain_bytes) if domain_bytes else []
    docs += _public_texts(seed=seed, target_bytes=target_bytes - sum(len(d.encode()) + 1 for d in docs))
    if domain_bytes and len(docs) > 1:
        random.Random(derive_seed(seed, "pii-corpus", "transfer", "mix")).shuffle(docs)
    return docs


def _public_texts(*, seed: int, target_bytes: int) -> list[str]:
    """General public-style text: news-like notes, reviews, paragraphs (no PII, no long numbers)."""
    from faker import Faker

    rng = random.Random(derive_seed(seed, "pii-corpus", "transfer"))
    fake = Faker("en_US")
    fake.seed_instance(derive_seed(seed, "pii-corpus", "transfer", "faker"))
    docs: list[str] = []
    size = 0
    while size < target_bytes:
        kind = rng.randrange(3)
        if kind == 0:
            doc = (f"{fake.city()} -- {rng.choice(_TOPICS).capitalize()} announced a plan on {fake.day_of_week()}: "
                   f"{fake.catch_phrase().lower()}. {fake.paragraph(nb_sentences=3)}")
        elif kind == 1:
            doc = (f"Review: I bought the {fake.color_name().lower()} {rng.choice(_PRODUCTS)} in {fake.month_name()}. "
                   f"{fake.paragraph(nb_sentences=2)} Rating: {rng.randint(1, 5)} out of 5.")
        else:
            doc = fake.paragraph(nb_sentences=4)
        docs.append(doc)
        size += len(doc.encode()) + 1
    return docs
