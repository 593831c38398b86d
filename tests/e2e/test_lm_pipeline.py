"""The language-model track end to end through the CLI, and its bad-input cases.

One tiny run (1-layer GPT-2, d=64, 512-token BPE, ~12 kB of members) is shared by the
artifact checks; the error cases stop before any training.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from distillguard.lm.pii_corpus import generate_pii_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_ARCH = "arch = { layers = 1, width = 64, heads = 2, context = 64 }\n"
TINY_AUDIT = (
    "[audit]\nbootstrap = 20\n[audit.lm]\nexposure_references = 100\nreference_epochs = 1\nmia_texts = 30\n"
    "pii_records = 10\npii_samples = 1\npii_tokens = 12\nextraction_samples = 4\nextraction_tokens = 16\n"
    "extractable_texts = 6\nextractable_k = 16\nextractable_suffix = 8\ndivergence_samples = 2\n"
    "min_private_length = 12\n"
)
TINY_LM_SPEC = (
    '[run]\nname = "tiny-lm"\n[data]\nbuiltin = "pii-corpus"\n'
    "[data.pii_corpus]\nmember_bytes = 12000\nnonmember_bytes = 6000\ntest_bytes = 3000\ntransfer_bytes = 20000\n"
    "canaries_per_count = 1\npii_mentions = [4, 8]\npii_people_per_count = 1\n"
    "[teacher]\nepochs = 8\nlr = 3e-3\n" + TINY_ARCH + "tokenizer = { vocab_size = 512 }\n"
    "[student]\nepochs = 1\nlr = 3e-3\n" + TINY_ARCH + "[distill]\nloss = \"jsd\"\ntop_k = 16\n"
    "[softlabels]\nprivate_prediction = false\n" + TINY_AUDIT  # plain KD: the teacher's own top-k labels
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distillguard", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lm-run")
    (root / "spec.toml").write_text(TINY_LM_SPEC)
    done = cli("run", "spec.toml", "--run-dir", "run", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run"


@pytest.fixture(scope="module")
def corpus():
    return generate_pii_corpus(seed=0, target_bytes=12000, canaries_per_count=1, nonmember_bytes=6000,
                               test_bytes=3000, transfer_bytes=20000, pii_mentions=(4, 8), pii_people_per_count=1)


def test_report_has_the_lm_fields(lm_run, corpus):
    report = json.loads((lm_run / "report.json").read_text())
    u = report["utility"]
    for target in ("teacher", "student"):
        assert 1.0 < u[target]["test_perplexity"] < 512, u  # better than uniform over the vocabulary
    assert u["perplexity_ratio"] == pytest.approx(u["student"]["test_perplexity"] / u["teacher"]["test_perplexity"])
    exposure = [p for p in report["probes"] if p["probe"] == "exposure"]
    assert {(p["target"], p["canary_id"]) for p in exposure} == {(t, i) for t in ("teacher", "student") for i in range(3)}
    assert {p["repetitions"] for p in exposure} == {1, 4, 16}  # counted in the members text
    for p in exposure:
        assert 0 <= p["exposure_bits"] <= p["max_bits"] and 0 <= p["baseline_bits"] <= p["max_bits"]
    top = next(p for p in exposure if p["target"] == "teacher" and p["repetitions"] == 16)
    assert top["exposure_bits"] >= top["max_bits"] - 1.5  # the teacher memorized its 16x canary
    assert {p["probe"] for p in report["probes"]} >= {"exposure", "pii_completion", "extraction", "k_extractable",
                                                       "divergence"}
    pii = {p["target"]: p for p in report["probes"] if p["probe"] == "pii_completion"}
    assert set(pii) == {"teacher", "student", "reference"}
    for p in pii.values():  # 10 records probed: the two frequent people and 8 of the others
        assert set(p["by_mentions"]) == {"1", "2", "3", "4", "8"} and p["by_mentions"]["8"]["n"] >= 1
        assert sum(g["n"] for g in p["by_mentions"].values()) == p["n"]
        assert 0 <= p["greedy_rate"] <= p["exact_match_rate"] <= 1
    assert "TF-IDF" in report["exchangeability"]["method"] and 0 <= report["exchangeability"]["auc"] <= 1
    attacks = {(a["attack"], a["target"]) for a in report["attacks"]}
    assert attacks == {(a, t) for a in ("loss", "zlib", "min_k", "min_k_pp", "reference") for t in ("teacher", "student")}
    assert report["gate"]["attack"] == "reference"
    names = [c["name"] for c in report["gate"]["checks"]]
    assert any(n.startswith("canary_excess_bits[student, worst: canary ") for n in names)
    assert report["leak_guard"]["flagged"] == 0 and report["leak_guard"]["policy"] == "fail"
    scores = pq.read_table(lm_run / "audit" / "scores.parquet").to_pandas()
    assert set(scores["attack"]) == {"loss", "zlib", "min_k", "min_k_pp", "reference"}
    assert len(scores) == 2 * 5 * 2 * 30  # targets x attacks x (members + nonmembers)
    assert "exposure" in (lm_run / "report.html").read_text()


def test_deploy_loads_with_plain_from_pretrained_and_holds_no_secret(lm_run, corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    deploy = lm_run / "deploy"
    model = AutoModelForCausalLM.from_pretrained(str(deploy), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(deploy), local_files_only=True)
    assert model.config.vocab_size == len(tokenizer)
    assert model(**tokenizer("Review: I bought the kettle", return_tensors="pt")).logits.shape[-1] == len(tokenizer)
    values = [c.secret for c in corpus.canaries] + [v for r in corpus.pii for v in (r.name, *r.attributes.values())]
    files = [p for p in deploy.rglob("*") if p.is_file()] + [lm_run / "report.json", lm_run / "report.html"]
    for path in files:
        data = path.read_bytes()
        assert not [v for v in values if v.encode() in data], path
    assert "teacher" not in {p.name for p in deploy.iterdir()}


def test_deploy_is_served_with_the_audited_decoding(lm_run):
    from fastapi.testclient import TestClient

    from distillguard.serve.app import create_app

    deploy = lm_run / "deploy"
    manifest = json.loads((deploy / "manifest.json").read_text())
    spec_probes = manifest["audited_generation"]
    assert manifest["generation"]["decoding"] in ("sample", "greedy")
    assert manifest["generation"]["max_new_tokens"] == spec_probes[f"{manifest['generation']['decoding']}_max_new_tokens"]
    client = TestClient(create_app(deploy, allow_failed_gate=True))
    answer = client.post("/generate", json={"prompts": ["Review: I bought the kettle"], "max_new_tokens": 4})
    assert answer.status_code == 200 and len(answer.json()["completions"]) == 1, answer.text


def test_student_stage_reads_no_private_file(lm_run):
    manifest = json.loads((lm_run / "manifest.json").read_text())
    inputs = manifest["stages"]["distill"]["inputs"]
    assert inputs and all(k.startswith("softlabels/") for k in inputs), sorted(inputs)
    assert manifest["stages"]["teacher"]["tokenizer"]["checked_no_secret_in_vocab"]
    hard = manifest["stages"]["distill"]["hard_tokens"]  # the default: digits come from the transfer text
    assert hard["tokens"] == "digits" and hard["vocabulary"] > 10
    assert (lm_run / "teacher").stat().st_mode & 0o077 == 0  # owner-only


def test_label_stage_writes_the_compact_store(lm_run):
    """[softlabels] logprob_bits at its default (4): the store is schema 2, ids uint16 (V = 512)."""
    meta = json.loads((lm_run / "softlabels" / "softlabels.json").read_text())
    assert (meta["schema_version"], meta["logprob_bits"], meta["id_dtype"], meta["k"]) == (2, 4, "uint16", 16)
    assert json.loads((lm_run / "manifest.json").read_text())["stages"]["label"]["params"]["logprob_bits"] == 4
    shard = pq.read_schema(lm_run / "softlabels" / meta["shards"][0]["file"])
    assert str(shard.field("topk_logprobs").type.value_type) == "uint8"


def test_rerun_skips_every_stage(lm_run):
    before = json.loads((lm_run / "manifest.json").read_text())["stages"]
    done = cli("run", "spec.toml", "--run-dir", "run", cwd=lm_run.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    after = json.loads((lm_run / "manifest.json").read_text())["stages"]
    assert {k: v["finished"] for k, v in after.items()} == {k: v["finished"] for k, v in before.items()}


def _write_jsonl_set(root: Path, corpus, *, transfer: list[str]) -> None:
    from distillguard.lm.data import write_canaries, write_jsonl_texts, write_pii

    for role in ("members", "nonmembers", "test"):
        write_jsonl_texts(root / f"{role}.jsonl", getattr(corpus, role))
    write_jsonl_texts(root / "transfer.jsonl", transfer)
    write_canaries(root / "canaries.jsonl", corpus.canaries)
    write_pii(root / "pii.jsonl", corpus.pii)


JSONL_DATA = ('[data]\nformat = "jsonl"\nmembers = "members.jsonl"\nnonmembers = "nonmembers.jsonl"\n'
              'transfer = "transfer.jsonl"\ntest = "test.jsonl"\ncanaries = "canaries.jsonl"\npii = "pii.jsonl"\n')


def test_leak_guard_refuses_a_lightly_edited_member_document(tmp_path, corpus):
    member = max(corpus.members, key=len)
    words = member.split(" ")
    words[3], words[-2] = "quickly", "indeed"  # two words changed
    edited = " ".join(words[:10] + ["really"] + words[10:])  # and one inserted
    _write_jsonl_set(tmp_path, corpus, transfer=corpus.transfer[:40] + [edited] + corpus.transfer[40:80])
    (tmp_path / "spec.toml").write_text(JSONL_DATA + "[teacher]\n" + TINY_ARCH + "[student]\n" + TINY_ARCH)
    done = cli("run", "spec.toml", "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "overlap" in line and "transfer.jsonl" in line and "row 40" in line
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "student").exists() and not (tmp_path / "run" / "softlabels").exists()


def test_bad_jsonl_line_names_file_and_line(tmp_path, corpus):
    _write_jsonl_set(tmp_path, corpus, transfer=corpus.transfer[:20])
    lines = (tmp_path / "nonmembers.jsonl").read_text().splitlines()
    lines[2] = '{"text": "unterminated'
    (tmp_path / "nonmembers.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "spec.toml").write_text(JSONL_DATA)
    done = cli("run", "spec.toml", "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 2
    assert "nonmembers.jsonl:3: not valid JSON" in done.stderr and "Traceback" not in done.stderr


def test_student_with_another_vocabulary_is_refused_naming_both_sizes(tmp_path, corpus):
    from distillguard.lm.models import build_causal_lm, save_causal_lm
    from distillguard.lm.tokenizer import save_tokenizer, train_bpe_tokenizer

    teacher_tok, student_tok = (train_bpe_tokenizer(corpus.transfer, vocab_size=v) for v in (300, 400))
    save_tokenizer(teacher_tok, tmp_path / "tok")
    config = {"kind": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64}
    save_causal_lm(build_causal_lm(config, tokenizer=student_tok, seed=0), student_tok, tmp_path / "student-init")
    _write_jsonl_set(tmp_path, corpus, transfer=corpus.transfer[:20])
    (tmp_path / "spec.toml").write_text(JSONL_DATA + '[teacher]\ntokenizer = { path = "tok" }\n' + TINY_ARCH
                                        + '[student]\npath = "student-init"\n')
    done = cli("run", "spec.toml", "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "has 300 tokens but the student's has 400" in line, line
    assert not (tmp_path / "run" / "teacher").exists()


@pytest.mark.parametrize(("policy", "kept"), [("drop", 2), ("warn", 3)])
def test_leak_policy_drop_and_warn_keep_what_they_say(tmp_path, corpus, policy, kept):
    from distillguard.config import load_spec
    from distillguard.stages.lm.label import guard_transfer_text

    copy = corpus.nonmembers[0]
    transfer = [corpus.transfer[0], copy, corpus.transfer[1]]
    _write_jsonl_set(tmp_path, corpus, transfer=transfer)
    (tmp_path / "spec.toml").write_text(JSONL_DATA + f'leak_policy = "{policy}"\n')
    keep, report = guard_transfer_text(load_spec(tmp_path / "spec.toml"), transfer)
    assert len(keep) == kept and (1 not in keep.tolist()) == (policy == "drop")
    assert report.to_dict()["exact"] == [{"transfer_row": 1, "split": "nonmembers", "private_row": 0}]


@pytest.mark.parametrize(("policy", "kept"), [("fail", None), ("drop", 2), ("warn", 3)])
def test_prefix_guard_in_the_label_stage_follows_the_leak_policy(tmp_path, corpus, policy, kept):
    """A transfer document holding a canary's prefix (not its secret) is refused, dropped or kept."""
    from distillguard.config import load_spec
    from distillguard.errors import DataLeakError
    from distillguard.stages.lm.label import guard_secret_contexts

    canary = corpus.canaries[0]
    leading = f"Some public text. {canary.prefix} and then other words."
    assert canary.secret not in leading
    transfer = [corpus.transfer[0], leading, corpus.transfer[1]]
    _write_jsonl_set(tmp_path, corpus, transfer=transfer)
    (tmp_path / "spec.toml").write_text(JSONL_DATA + f'leak_policy = "{policy}"\n')
    spec = load_spec(tmp_path / "spec.toml")
    if policy == "fail":
        with pytest.raises(DataLeakError, match=r"transfer.jsonl contains the prefixes of canaries \(canary 0: 1 "):
            guard_secret_contexts(spec, transfer, [0, 1, 2])
        return
    keep, record = guard_secret_contexts(spec, transfer, [0, 1, 2])
    assert len(keep) == kept and (1 in keep) == (policy == "warn")
    assert record == {"checked": True, "flagged_documents": 1, "canary_ids": [0],
                      "dropped": 1 if policy == "drop" else 0}
    clean_keep, clean = guard_secret_contexts(spec, [corpus.transfer[0], corpus.transfer[1]], [0, 1])
    assert clean_keep == [0, 1] and clean["flagged_documents"] == 0
