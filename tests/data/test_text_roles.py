"""Labelled texts: the bbc-news split, the public tokenizer, token-id rows and bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillguard.config import DataConfig
from distillguard.data import load_members, load_role
from distillguard.data.text_roles import bbc_news, public_tokenizer, role_texts
from distillguard.errors import DataError, DataLeakError
from distillguard.lm.tokenizer import check_secrets_not_in_vocab, train_bpe_tokenizer

SMALL = {"members": 40, "nonmembers": 40, "transfer": 60, "test": 30}
TOPICS = {"sport": "the team won the match after a late goal by the young striker",
          "tech": "the company released a faster phone with a new chip and more memory",
          "food": "the chef cooked a spicy soup with fresh herbs and slow roasted garlic"}
SECRET = "Zqvrxlemborath"


def bbc(**sizes) -> DataConfig:
    return DataConfig(builtin="bbc-news", sizes={**SMALL, **sizes}, text={"max_length": 32, "vocab_size": 300})


def write_text_files(folder: Path, *, fmt: str = "csv", secret_in_members: bool = True) -> dict[str, Path]:
    """Four small files of labelled texts; the members repeat a secret word that no other role has."""
    rng = np.random.default_rng(0)
    words = {t: TOPICS[t].split() + ["".join(rng.choice(list("abcdefghijklmnoprstuvw"), size=6)) for _ in range(60)]
             for t in TOPICS}
    paths = {}
    for role, n in {"members": 30, "nonmembers": 30, "transfer": 60, "test": 20}.items():
        labels = rng.choice(sorted(TOPICS), size=n)
        texts = [" ".join(rng.choice(words[t], size=14)) for t in labels]
        if role == "members" and secret_in_members:
            texts = [f"{t} {SECRET}" for t in texts]
        frame = pd.DataFrame({"text": texts, "y": labels})
        if role == "transfer":
            frame = frame.drop(columns=["y"])
        paths[role] = folder / f"{role}.{fmt}"
        if fmt == "csv":
            frame.to_csv(paths[role], index=False)
        else:
            paths[role].write_text("".join(json.dumps(row) + "\n" for row in frame.to_dict("records")))
    return paths


def files_cfg(paths: dict[str, Path], **extra) -> DataConfig:
    return DataConfig(**{role: str(p) for role, p in paths.items()}, label="y",
                      text={"max_length": 32, "vocab_size": 300, **extra.pop("text", {})}, **extra)


def test_bbc_corpus_has_five_topics_and_no_exact_duplicates():
    texts, topics = bbc_news()
    assert 2100 < len(texts) < 2225  # 2,225 articles, some of them published twice
    assert sorted(set(topics)) == ["business", "entertainment", "politics", "sports", "tech"]
    assert len({" ".join(t.split()).casefold() for t in texts}) == len(texts)


def test_bbc_split_is_disjoint_deterministic_and_sized():
    cfg = bbc()
    roles = {role: role_texts(cfg, role, seed=0) for role in ("members", "nonmembers", "transfer", "test")}
    assert [len(roles[r][0]) for r in ("members", "nonmembers", "test")] == [40, 40, 30]
    assert 55 <= len(roles["transfer"][0]) <= 60  # near copies of private articles are dropped
    seen = [set(texts) for texts, *_ in roles.values()]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])
    assert roles["transfer"][1] is None and len(set(roles["members"][1])) == 5  # stratified: every topic
    again = role_texts(bbc(), "members", seed=0)[0]
    assert again == roles["members"][0]
    assert role_texts(bbc(), "members", seed=1)[0] != again


def test_members_become_token_rows_with_the_public_tokenizer():
    cfg = bbc()
    schema, members = load_members(cfg, seed=0)
    assert members.X.shape == (40, 32) and members.X.dtype == np.int32
    assert schema.classes == ["business", "entertainment", "politics", "sports", "tech"]
    assert schema.encoding["kind"] == "text" and schema.raw_feature_names == ["text"]
    assert (members.X[:, 0] == 0).all()  # every text starts with <|endoftext|>
    test = load_role(cfg, "test", schema=schema, seed=0)
    assert test.X.shape == (30, 32) and set(test.y) <= set(range(5))


def test_tokenizer_sees_the_transfer_texts_only(tmp_path):
    paths = write_text_files(tmp_path)
    cfg = files_cfg(paths)
    tokenizer = public_tokenizer(cfg, seed=0)
    check_secrets_not_in_vocab(tokenizer, [SECRET])  # the members' secret word is no token, nor a piece
    schema, members = load_members(cfg, seed=0)
    assert json.loads(schema.encoding["tokenizer"])["model"] == json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    assert json.loads(schema.encoding["tokenizer"])["padding"] is None  # no state of the last call is stored
    # positive control: the same fit on the members' text would have learnt it
    leaky = train_bpe_tokenizer(role_texts(cfg, "members", seed=0)[0], vocab_size=300)
    with pytest.raises(DataLeakError):
        check_secrets_not_in_vocab(leaky, [SECRET])


def test_jsonl_files_and_leak_guard(tmp_path):
    paths = write_text_files(tmp_path, fmt="jsonl")
    cfg = files_cfg(paths)
    schema, members = load_members(cfg, seed=0)
    assert members.X.shape == (30, 32) and schema.classes == ["food", "sport", "tech"]
    # a transfer text that copies a member fails the run (policy "fail"), and is dropped under "drop"
    rows = [json.loads(line) for line in paths["transfer"].read_text().splitlines()]
    rows[7]["text"] = json.loads(paths["members"].read_text().splitlines()[3])["text"]
    paths["transfer"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataLeakError, match="transfer row 7"):
        role_texts(files_cfg(paths), "transfer", seed=0)
    texts, _, ids, _ = role_texts(files_cfg(paths, leak_policy="drop"), "transfer", seed=0)
    assert len(texts) == 59 and 7 not in ids


def test_file_without_label_column_is_one_line_error(tmp_path):
    paths = write_text_files(tmp_path)
    pd.read_csv(paths["test"]).drop(columns=["y"]).to_csv(paths["test"], index=False)
    with pytest.raises(DataError) as error:  # found with the members, before any model is trained
        load_members(files_cfg(paths), seed=0)
    assert "test.csv" in str(error.value) and "label column 'y'" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DataError, match="text column 'body'"):
        load_members(files_cfg(paths, text={"column": "body"}), seed=0)
