"""The worst-canary gate check catches one canary the student leaks, with its id and numbers.

A tiny teacher memorizes the members, where one canary is planted 16 times. The transfer
text holds that canary's prefix (its context, never its secret) as documents of their
own, so the teacher's soft labels after the prefix spell out the secret and the student
learns it (the prefix guard warns and keeps them: ``leak_policy = "warn"``). The reference
model, trained on the same transfer text with plain next-token loss, never sees the
secret, so it is the canary's baseline. The gate must fail on that canary, not average it
away with the two canaries that do not leak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from distillguard.lm.data import write_canaries, write_jsonl_texts
from distillguard.lm.pii_corpus import generate_pii_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

ARCH = "arch = { layers = 1, width = 64, heads = 2, context = 64 }\n"
SPEC = (
    '[run]\nname = "leaky-canary"\n'
    '[data]\nformat = "jsonl"\nmembers = "members.jsonl"\nnonmembers = "nonmembers.jsonl"\n'
    'transfer = "transfer.jsonl"\ntest = "test.jsonl"\ncanaries = "canaries.jsonl"\nleak_policy = "warn"\n'
    "[teacher]\nepochs = 8\nlr = 3e-3\n" + ARCH + "tokenizer = { vocab_size = 512 }\n"
    "[student]\nepochs = 3\nlr = 3e-3\n" + ARCH + "[distill]\ntop_k = 16\n"
    "[softlabels]\nprivate_prediction = false\n"  # plain KD, which leaks the canary
    "[audit]\nbootstrap = 20\n[audit.lm]\nexposure_references = 500\nreference_epochs = 1\nmia_texts = 10\n"
    "extraction_samples = 0\nextractable_texts = 0\ndivergence_samples = 0\n"
)
PREFIX_COPIES = 40


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("leaky-canary")
    corpus = generate_pii_corpus(seed=0, target_bytes=12000, canaries_per_count=1, nonmember_bytes=6000,
                                 test_bytes=3000, transfer_bytes=20000, pii_mentions=(), pii_people_per_count=0)
    leaked = next(i for i, c in enumerate(corpus.canaries) if c.repetitions == 16)
    prefix = corpus.canaries[leaked].prefix
    for role in ("members", "nonmembers", "test"):
        write_jsonl_texts(root / f"{role}.jsonl", getattr(corpus, role))
    write_jsonl_texts(root / "transfer.jsonl", corpus.transfer + [prefix] * PREFIX_COPIES)
    write_canaries(root / "canaries.jsonl", corpus.canaries)
    (root / "spec.toml").write_text(SPEC)
    done = subprocess.run([sys.executable, "-m", "distillguard", "run", "spec.toml", "--run-dir", "run"], cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run", leaked


def test_worst_canary_check_fails_naming_the_leaked_canary(leaky_run):
    run, leaked = leaky_run
    report = json.loads((run / "report.json").read_text())
    table = report["canary_exposure"]
    assert table["target"] == "student" and table["worst_canary_id"] == leaked
    rows = {r["canary_id"]: r for r in table["canaries"]}
    assert set(rows) == {0, 1, 2} and rows[leaked]["repetitions"] == 16
    worst = rows[leaked]
    assert worst["excess_bits"] == pytest.approx(worst["exposure_bits"] - worst["baseline_bits"], abs=1e-5)
    check = next(c for c in report["gate"]["checks"] if c["name"].startswith("canary_excess_bits[student"))
    assert check["name"] == f"canary_excess_bits[student, worst: canary {leaked}]"
    assert not check["passed"] and not report["gate"]["passed"]
    assert check["value"] == worst["excess_bits"] > check["threshold"] == 4.0
    assert (check["canary_id"], check["exposure_bits"], check["baseline_bits"]) == (
        leaked, worst["exposure_bits"], worst["baseline_bits"])
    assert worst["exposure_bits"] > 8.0 and worst["baseline_bits"] < 3.0  # of log2(501) = 8.97 measurable
    assert sum(r["excess_bits"] for r in rows.values()) / 3 < check["threshold"]  # a mean would have passed
    probes = [p for p in report["probes"] if p["probe"] == "exposure"]
    assert all(p["suffix_scored"] and p["length_control"] in ("matched", "corrected") for p in probes)
