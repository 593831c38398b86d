"""JSONL roles, canaries and PII files; the built-in pii-corpus generator."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from distillguard.errors import DataError
from distillguard.lm.data import (
    CanarySpec,
    PiiRecord,
    check_canaries_planted,
    read_canaries,
    read_jsonl_texts,
    read_pii,
    write_canaries,
    write_jsonl_texts,
    write_pii,
)
from distillguard.lm.pii_corpus import generate_pii_corpus, generate_transfer_texts
from distillguard.lm.probes.pii import contains_value

pytestmark = pytest.mark.usefixtures("one_thread")

# --- JSONL texts -------------------------------------------------------------------------


def test_texts_round_trip_with_unicode(tmp_path: Path) -> None:
    texts = ["hello", "naïve café — 東京", "line\nbreak"]
    write_jsonl_texts(tmp_path / "a.jsonl", texts)
    assert read_jsonl_texts(tmp_path / "a.jsonl") == texts


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"text": "a"}\n{"text": \n', r"bad\.jsonl:2: not valid JSON"),
        (b'{"text": "a"}\n{"body": "b"}\n', r'bad\.jsonl:2: missing key "text"'),
        (b'{"text": 3}\n', r'bad\.jsonl:1: "text" must be a string, got int'),
        (b'["text"]\n', r"bad\.jsonl:1: expected a JSON object, got list"),
        (b'{"text": "a"}\n{"text": "b"}\n{"text": "\xff\xfe"}\n', r"bad\.jsonl:3: not valid UTF-8"),
        (b"", r"bad\.jsonl: empty"),
        (b"\n  \n", r"bad\.jsonl: empty"),
    ],
)
def test_texts_errors_name_file_and_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected):
        read_jsonl_texts(path)


def test_texts_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        read_jsonl_texts(tmp_path / "nope.jsonl")


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": 1}\n')
    with pytest.raises(DataError, match=r"t\.jsonl:3:"):
        read_jsonl_texts(path)


# --- canaries ----------------------------------------------------------------------------


def test_canaries_round_trip_and_default_alphabet(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"prefix": "my PIN is ", "secret": "123456", "repetitions": 4}\n'
                    '{"prefix": "code ", "secret": "abca", "repetitions": 1, "alphabet": "abc"}\n\n')
    canaries = read_canaries(path)
    assert canaries == [CanarySpec("my PIN is ", "123456", 4, "0123456789"), CanarySpec("code ", "abca", 1, "abc")]
    write_canaries(tmp_path / "d.jsonl", canaries)
    assert read_canaries(tmp_path / "d.jsonl") == canaries


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"prefix": "p ", "secret": "12", "repetitions": 1, "colour": 1}',
         r"canary 1\): unknown key\(s\) \['colour'\]"),
        ('{"prefix": "p ", "secret": "12", "repetitions": 0}', r'"repetitions" must be an integer >= 1, got 0'),
        ('{"prefix": "p ", "secret": "12", "repetitions": true}', r'"repetitions" must be an integer >= 1'),
        ('{"prefix": "p ", "secret": "12a", "repetitions": 1}', r"characters \['a'\] outside its alphabet"),
        ('{"prefix": "p ", "repetitions": 1}', r'"secret" must be a string'),
        ('{"prefix": "p ", "secret": "", "repetitions": 1}', r'"secret" is empty'),
        ('{"prefix": "p ", "secret": "12", "repetitions": 1, "suffix": 5}', r'"suffix" must be a string .*got 5'),
    ],
)
def test_canary_errors_name_line_and_canary_id(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"prefix": "ok ", "secret": "1", "repetitions": 1}\n' + line + "\n")
    with pytest.raises(DataError, match=r"c\.jsonl:2 \(canary 1\)") as info:
        read_canaries(path)
    assert re.search(expected, str(info.value))


def test_canary_suffix_is_optional_round_trips_and_is_part_of_the_planted_text(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"prefix": "my PIN is ", "secret": "123456", "repetitions": 2, "suffix": "."}\n'
                    '{"prefix": "code ", "secret": "42", "repetitions": 1}\n')
    canaries = read_canaries(path)
    assert [c.suffix for c in canaries] == [".", ""]  # a file without suffixes reads as before
    assert canaries[0].text == "my PIN is 123456."
    write_canaries(tmp_path / "d.jsonl", canaries)
    assert read_canaries(tmp_path / "d.jsonl") == canaries
    assert "suffix" not in (tmp_path / "d.jsonl").read_text().splitlines()[1]  # old format kept when empty
    members = ["my PIN is 123456. bye", "my PIN is 123456, or not", "code 42"]  # the second lacks the suffix
    with pytest.warns(UserWarning, match=r"canary 0: declared 2, counted 1"):
        counts = check_canaries_planted(canaries, members)
    assert [c.counted for c in counts] == [1, 1]


def test_builtin_corpus_canaries_declare_the_line_break_that_follows_them() -> None:
    from distillguard.lm.pii_corpus import generate_pii_corpus

    corpus = generate_pii_corpus(seed=0, target_bytes=6000, canaries_per_count=1, transfer_bytes=2000,
                                 pii_mentions=(), pii_people_per_count=0)
    assert {c.suffix for c in corpus.canaries} == {"\n"}
    counts = check_canaries_planted(corpus.canaries, corpus.members)
    assert [c.counted for c in counts] == [c.repetitions for c in corpus.canaries] == [1, 4, 16]


def test_blank_line_between_canaries_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"prefix": "a ", "secret": "1", "repetitions": 1}\n\n'
                    '{"prefix": "b ", "secret": "2", "repetitions": 1}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:2: blank line; canary ids are 0-based line numbers"):
        read_canaries(path)


def test_check_canaries_counts_occurrences() -> None:
    canaries = [CanarySpec("pin ", "111", 2), CanarySpec("code ", "222", 3)]
    members = ["x pin 111 y", "pin 111 and code 222", "code 222 code 222"]
    counts = check_canaries_planted(canaries, members)
    assert [(c.canary_id, c.declared, c.counted) for c in counts] == [(0, 2, 2), (1, 3, 3)]
    with pytest.warns(UserWarning, match=r"canary 1: declared 3, counted 1"):
        counts = check_canaries_planted(canaries, members[:2])
    assert [(c.declared, c.counted) for c in counts] == [(2, 2), (3, 1)]


def test_absent_canary_is_an_error_naming_its_line() -> None:
    canaries = [CanarySpec("pin ", "111", 1), CanarySpec("code ", "222", 1), CanarySpec("door ", "333", 1)]
    with pytest.raises(DataError, match=r"canaries \[1, 2\] \(0-based lines of the canaries file\) do not occur"):
        check_canaries_planted(canaries, ["pin 111"])
    with pytest.warns(UserWarning, match=r"canaries \[1, 2\]"):
        counts = check_canaries_planted(canaries, ["pin 111"], missing="warn")
    assert [c.counted for c in counts] == [1, 0, 0]


# --- PII ---------------------------------------------------------------------------------


def test_pii_round_trip(tmp_path: Path) -> None:
    records = [PiiRecord("Ann Lee", {"email": "ann@x.org", "phone": "(555) 010-0000"})]
    write_pii(tmp_path / "p.jsonl", records)
    assert read_pii(tmp_path / "p.jsonl") == records


def test_pii_mentions_is_a_count_not_an_attribute(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"name": "Ann Lee", "email": "ann@x.org", "mentions": 4}\n{"name": "Bo Wu", "phone": "1"}\n')
    records = read_pii(path)
    assert records == [PiiRecord("Ann Lee", {"email": "ann@x.org"}, mentions=4), PiiRecord("Bo Wu", {"phone": "1"})]
    assert records[0].fields() == {"name": "Ann Lee", "email": "ann@x.org"}
    write_pii(tmp_path / "q.jsonl", records)
    assert read_pii(tmp_path / "q.jsonl") == records
    path.write_text('{"name": "Ann Lee", "email": "ann@x.org", "mentions": "4"}\n')
    with pytest.raises(DataError, match=r'p\.jsonl:1: "mentions" must be an integer >= 1, got \'4\''):
        read_pii(path)


def test_pii_records_are_probed_evenly_over_mention_counts() -> None:
    from distillguard.lm.probes.memorization import select_pii_records

    records = [PiiRecord(f"P{i}", {"email": f"{i}@x"}, mentions=m) for i, m in enumerate([1] * 6 + [2] * 3 + [16] * 2)]
    chosen = select_pii_records(records, 7)
    assert [r.name for r in chosen] == ["P0", "P6", "P9", "P1", "P7", "P10", "P2"]
    assert sorted(r.name for r in select_pii_records(records, 100)) == sorted(r.name for r in records)
    plain = [PiiRecord(f"Q{i}", {"email": f"{i}@x"}) for i in range(5)]
    assert select_pii_records(plain, 3) == plain[:3]  # no counts: file order


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"email": "a@b.c"}', 'missing key "name"'),
        ('{"name": "A", "phone": 5}', r"values must be strings; \['phone'\]"),
        ('{"name": "A"}', "record has only a name"),
    ],
)
def test_pii_errors(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=r"p\.jsonl:1: " + expected):
        read_pii(path)


# --- the built-in corpus -----------------------------------------------------------------


def test_generator_is_deterministic(small_corpus, small_corpus_args) -> None:
    assert generate_pii_corpus(seed=0, **small_corpus_args) == small_corpus
    other = generate_pii_corpus(seed=1, **small_corpus_args)
    assert other.members != small_corpus.members and other.canaries != small_corpus.canaries


def test_transfer_is_generated_alone(small_corpus) -> None:
    assert generate_transfer_texts(seed=0, target_bytes=30_000) == small_corpus.transfer


def _mentioned(value: str, texts) -> int:
    """Documents that hold ``value`` as a whole value ("Ann Lee" is not in "Ann Leeds")."""
    return sum(contains_value(text, value) for text in texts)


def _whole_values_in(values, texts) -> list[str]:
    """The values some text holds as a whole value (a cheap substring test first)."""
    joined = "\n".join(texts)
    return [v for v in values if v in joined and _mentioned(v, texts)]


def test_default_corpus_shape(default_corpus) -> None:
    sizes = {role: sum(len(t.encode()) + 1 for t in getattr(default_corpus, role))
             for role in ("members", "nonmembers", "transfer", "test")}
    assert 300_000 <= sizes["members"] < 303_000
    assert 300_000 <= sizes["nonmembers"] < 303_000 and 300_000 <= sizes["transfer"] < 303_000
    assert 75_000 <= sizes["test"] < 78_000
    canaries = default_corpus.canaries
    assert sorted(c.repetitions for c in canaries) == [1, 1, 4, 4, 16, 16]
    assert all(c.secret.isdigit() and 6 <= len(c.secret) <= 9 for c in canaries)
    assert len({c.prefix for c in canaries}) == len(canaries)
    counts = check_canaries_planted(canaries, default_corpus.members)
    assert all(c.counted == c.declared for c in counts)
    for people in (default_corpus.pii, default_corpus.pii_nonmembers):  # the same mix in both roles
        mentions = Counter(r.mentions for r in people)
        assert mentions[4] == mentions[8] == mentions[16] == 10 and set(mentions) == {1, 2, 3, 4, 8, 16}


def test_frequent_people_are_mentioned_as_often_as_recorded(default_corpus) -> None:
    frequent = [r for r in default_corpus.pii if r.mentions >= 4]
    assert len(frequent) == 30
    for record in frequent:
        assert _mentioned(record.name, default_corpus.members) == record.mentions
        assert _mentioned(record.attributes["email"], default_corpus.members) == record.mentions
    for record in default_corpus.pii[::25]:  # and the others too
        assert _mentioned(record.name, default_corpus.members) == record.mentions


def test_mentions_knobs_and_their_scaling() -> None:
    corpus = generate_pii_corpus(seed=0, target_bytes=20_000, nonmember_bytes=10_000, test_bytes=5_000,
                                 canaries_per_count=0, pii_mentions=(5, 7), pii_people_per_count=2,
                                 transfer_bytes=2_000)
    assert Counter(r.mentions for r in corpus.pii if r.mentions >= 4) == {5: 2, 7: 2}
    assert Counter(r.mentions for r in corpus.pii_nonmembers if r.mentions >= 4) == {5: 1, 7: 1}  # half the size
    none = generate_pii_corpus(seed=0, target_bytes=20_000, canaries_per_count=0, pii_mentions=(),
                               transfer_bytes=2_000)
    assert max(r.mentions for r in none.pii) <= 3


def test_roles_mention_disjoint_people(default_corpus) -> None:
    member_names = {r.name for r in default_corpus.pii}
    assert member_names.isdisjoint(r.name for r in default_corpus.pii_nonmembers)
    members = "\n".join(default_corpus.members)
    assert all("email" in r.attributes and r.name in members for r in default_corpus.pii)
    values = [v for r in default_corpus.pii for v in (r.name, *r.attributes.values())]
    assert _whole_values_in(values, default_corpus.nonmembers + default_corpus.test) == []
    for canary in default_corpus.canaries:
        assert not any(canary.text in t for t in default_corpus.nonmembers + default_corpus.test)
        assert any(canary.prefix in t for t in default_corpus.nonmembers)  # decoys: the template is no signal


def test_transfer_is_in_domain_but_holds_no_private_value(default_corpus) -> None:
    """Emails, chats and records of the transfer's own people: no member PII, secret or canary prefix."""
    from distillguard.lm.prefix_guard import find_secret_contexts

    transfer = default_corpus.transfer
    assert sum("@" in t for t in transfer) > len(transfer) // 2  # in-domain: most documents mention an email
    people = [r for role in (default_corpus.pii, default_corpus.pii_nonmembers) for r in role]
    values = [v for r in people for v in (r.name, *r.attributes.values())]
    assert _whole_values_in(values, transfer) == []
    joined = "\n".join(transfer)
    for canary in default_corpus.canaries:
        assert canary.secret not in joined
    assert find_secret_contexts(transfer, default_corpus.canaries) == []


def test_in_domain_transfer_passes_the_near_duplicate_guard(small_corpus) -> None:
    """Documents of the members' templates about other people stay far below Jaccard 0.7."""
    from distillguard.data.leakguard_text import find_text_leaks

    private = {"members": small_corpus.members, "nonmembers": small_corpus.nonmembers}
    report = find_text_leaks(small_corpus.transfer, private, jaccard_threshold=0.7, seed=0)
    assert report.transfer_rows.size == 0
    copied = small_corpus.transfer[:20] + [small_corpus.members[0]]
    assert find_text_leaks(copied, private, jaccard_threshold=0.7, seed=0).transfer_rows.tolist() == [20]


def test_transfer_share_in_domain() -> None:
    public = generate_transfer_texts(seed=0, target_bytes=20_000, in_domain=0.0)
    joined = "\n".join(public)
    assert "@" not in joined and not re.search(r"\d{3}", joined)  # general text: no email, no long number
    mixed = generate_transfer_texts(seed=0, target_bytes=20_000, in_domain=0.5)
    domain = sum(len(t.encode()) + 1 for t in mixed if "@" in t or "Customer record" in t)
    assert 0.4 <= domain / 20_000 <= 0.6
    with pytest.raises(ValueError, match="'in_domain' parameter of generate_transfer_texts must be in"):
        generate_transfer_texts(seed=0, in_domain=1.5)


def test_generator_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="'target_bytes' parameter of generate_pii_corpus must be >= 1000"):
        generate_pii_corpus(seed=0, target_bytes=10)
    with pytest.raises(ValueError, match="'secret_digits'"):
        generate_pii_corpus(seed=0, target_bytes=2000, secret_digits=(9, 6))


def test_corpus_files_round_trip(tmp_path: Path, small_corpus) -> None:
    write_jsonl_texts(tmp_path / "members.jsonl", small_corpus.members)
    write_canaries(tmp_path / "canaries.jsonl", small_corpus.canaries)
    write_pii(tmp_path / "pii.jsonl", small_corpus.pii)
    assert read_jsonl_texts(tmp_path / "members.jsonl") == small_corpus.members
    assert read_canaries(tmp_path / "canaries.jsonl") == small_corpus.canaries
    assert read_pii(tmp_path / "pii.jsonl") == small_corpus.pii
    first = json.loads((tmp_path / "pii.jsonl").read_text().splitlines()[0])
    assert {"name", "email", "phone", "mentions"} <= set(first) <= {"name", "email", "phone", "account", "mentions"}


def test_texts_stream_lazily(tmp_path: Path) -> None:
    from distillguard.lm.data import iter_jsonl_texts

    path = tmp_path / "big.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\nnot json\n')
    stream = iter_jsonl_texts(path)
    assert [next(stream), next(stream)] == ["a", "b"]  # the bad line is only read when reached
    with pytest.raises(DataError, match=r"big\.jsonl:3: not valid JSON"):
        next(stream)


def test_jsonl_groups_are_optional_and_checked(tmp_path: Path) -> None:
    from distillguard.lm.data import read_jsonl_groups

    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert read_jsonl_groups(plain) is None  # independent documents
    grouped = tmp_path / "grouped.jsonl"
    grouped.write_text('{"text": "a", "group": "alice"}\n{"text": "b"}\n{"text": "c", "group": 7}\n'
                       '{"text": "d", "group": "alice"}\n')
    groups = read_jsonl_groups(grouped)
    assert groups[0] == groups[3] and len(set(groups)) == 3  # a line without one is a group of its own
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "group": [1]}\n')
    with pytest.raises(DataError, match=r'bad.jsonl:1: "group" must be a string or an integer, got list'):
        read_jsonl_groups(bad)
