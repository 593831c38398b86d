"""JSONL roles, canaries and PII files; the built-in pii-corpus generator."""

from __future__ import annotations

import json
import re
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
    ],
)
def test_canary_errors_name_line_and_canary_id(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"prefix": "ok ", "secret": "1", "repetitions": 1}\n' + line + "\n")
    with pytest.raises(DataError, match=r"c\.jsonl:2 \(canary 1\)") as info:
        read_canaries(path)
    assert re.search(expected, str(info.value))


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


def test_generator_is_deterministic(small_corpus) -> None:
    again = generate_pii_corpus(seed=0, target_bytes=12_000, canaries_per_count=1, nonmember_bytes=6_000,
                                test_bytes=3_000, transfer_bytes=30_000)
    assert again == small_corpus
    other = generate_pii_corpus(seed=1, target_bytes=12_000, canaries_per_count=1, nonmember_bytes=6_000,
                                test_bytes=3_000, transfer_bytes=30_000)
    assert other.members != small_corpus.members and other.canaries != small_corpus.canaries


def test_transfer_is_generated_alone(small_corpus) -> None:
    assert generate_transfer_texts(seed=0, target_bytes=30_000) == small_corpus.transfer


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


def test_roles_mention_disjoint_people_and_transfer_is_public(default_corpus) -> None:
    members = "\n".join(default_corpus.members)
    nonmembers = "\n".join(default_corpus.nonmembers)
    transfer = "\n".join(default_corpus.transfer)
    test = "\n".join(default_corpus.test)
    member_names = {r.name for r in default_corpus.pii}
    assert member_names.isdisjoint(r.name for r in default_corpus.pii_nonmembers)
    for record in default_corpus.pii[:200]:
        assert "email" in record.attributes and record.name in members
        assert all(value in members for value in record.attributes.values())
        for value in (record.name, *record.attributes.values()):
            assert value not in transfer and value not in nonmembers and value not in test
    for canary in default_corpus.canaries:
        assert canary.secret not in transfer and canary.text not in nonmembers and canary.text not in test
        assert canary.prefix in nonmembers  # decoys: the template alone is no membership signal
    assert "@" not in transfer and not re.search(r"\d{3}", transfer)


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
    assert set(first) == {"name", "email", "phone", "account"}


def test_texts_stream_lazily(tmp_path: Path) -> None:
    from distillguard.lm.data import iter_jsonl_texts

    path = tmp_path / "big.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\nnot json\n')
    stream = iter_jsonl_texts(path)
    assert [next(stream), next(stream)] == ["a", "b"]  # the bad line is only read when reached
    with pytest.raises(DataError, match=r"big\.jsonl:3: not valid JSON"):
        next(stream)
