"""The causal-LM service: /generate answers in the audited decoding only, client mistakes are 4xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from distillguard.config.deploy import DeployConfig, audited_generation, generation_policy
from distillguard.config.lm import LMProbeConfig
from distillguard.errors import ArtifactError
from distillguard.runs import sha256_file
from distillguard.serve.app import create_app
from distillguard.serve.bundle_check import GateFailedError

TEXTS = [f"Customer {i} ordered {i % 7} boxes of tea on day {i % 31}." for i in range(200)]


def make_lm_deploy(folder: Path, *, generation: dict | None = None, gate_passed: bool = True, **serving) -> Path:
    from distillguard.lm.models import build_causal_lm, save_causal_lm
    from distillguard.lm.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(TEXTS, vocab_size=300)
    model = build_causal_lm({"kind": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 48},
                            tokenizer=tokenizer, seed=0)
    save_causal_lm(model, tokenizer, folder)
    audited = audited_generation(LMProbeConfig())
    (folder / "manifest.json").write_text(json.dumps({
        "run": {"name": "hand"}, "student_sha256": sha256_file(folder / "model.safetensors"), "gate_passed": gate_passed,
        "generation": generation or generation_policy(DeployConfig(max_new_tokens=8), audited),
        "audited_generation": audited, "serving": {**DeployConfig().serving_limits(), "max_rows": 4, **serving}}))
    return folder


@pytest.fixture(scope="module")
def lm_deploy(tmp_path_factory) -> Path:
    return make_lm_deploy(tmp_path_factory.mktemp("lm") / "deploy", query_budget=12)


def test_generate_answers_in_the_audited_decoding(lm_deploy):
    client = TestClient(create_app(lm_deploy))
    assert client.get("/health").json() == {"status": "ok"}
    schema = client.get("/schema").json()
    assert schema["generation"] == {"decoding": "sample", "temperature": 1.0, "top_k": 40, "max_new_tokens": 8}
    assert schema["context"] == 48 and schema["max_prompts"] == 4
    answer = client.post("/generate", json={"prompts": ["Customer 3 ordered", "On day 4"], "max_new_tokens": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["generation"]["max_new_tokens"] == 5 and body["generation"]["decoding"] == "sample"
    assert len(body["completions"]) == 2 and all(isinstance(c, str) for c in body["completions"])


def test_greedy_bundle_answers_what_the_audit_decoded(tmp_path):
    """Greedy is deterministic: the service's completion is the audit's own greedy decoding of the prompt."""
    from distillguard.lm.models import load_causal_lm
    from distillguard.lm.probes.generation import generate_continuations, special_ids
    from distillguard.lm.probes.scoring import encode_prompts

    greedy = {"decoding": "greedy", "temperature": 1.0, "top_k": None, "max_new_tokens": 6}
    folder = make_lm_deploy(tmp_path / "greedy", generation=greedy)
    client = TestClient(create_app(folder))
    prompts = ["Customer 3 ordered", "On day 4 of"]
    first = client.post("/generate", json={"prompts": prompts}).json()["completions"]
    assert client.post("/generate", json={"prompts": prompts}).json()["completions"] == first
    model, tokenizer = load_causal_lm(folder)
    pad, eos = special_ids(tokenizer)
    ids = generate_continuations(model, encode_prompts(tokenizer, prompts), max_new_tokens=6, do_sample=False,
                                 pad_token_id=pad, eos_token_id=eos)
    assert first == [tokenizer.decode(g[0], skip_special_tokens=True) for g in ids]
    assert all(len(g[0]) <= 6 for g in ids)


@pytest.mark.parametrize(("payload", "status", "message"), [
    ([1, 2], 422, "body: expected a JSON object"),
    ({"prompts": []}, 422, "prompts: expected a non-empty list of strings"),
    ({"prompts": ["a", 3]}, 422, "prompts[1]: expected a non-empty string, got int"),
    ({"prompts": ["  "]}, 422, "prompts[0]: expected a non-empty string, got an empty string"),
    ({"prompts": ["a"] * 5}, 413, "prompts: 5 given; at most 4 per request"),
    ({"prompts": ["a"], "max_new_tokens": 9}, 422, "max_new_tokens: expected an integer from 1 to 8"),
    ({"prompts": ["a"], "max_new_tokens": True}, 422, "max_new_tokens: expected an integer from 1 to 8"),
    ({"prompts": ["a"], "temperature": 2.0}, 422, "'temperature': unknown field; expected prompts, max_new_tokens"),
    ({"prompts": ["Customer " * 30]}, 422, "prompts[0]: "),
])
def test_client_mistakes_are_4xx_naming_the_field(lm_deploy, payload, status, message):
    client = TestClient(create_app(lm_deploy))
    answer = client.post("/generate", json=payload)
    assert answer.status_code == status and answer.json()["error"].startswith(message), answer.text
    assert "Customer" not in answer.json()["error"]  # never echoes a prompt
    assert client.post("/generate", content=b'{"prompts": [NaN]}').status_code == 400
    assert client.post("/predict", json={"rows": []}).status_code == 404
    assert client.get("/health").status_code == 200


def test_budget_counts_prompts_and_answers_429(lm_deploy):
    client = TestClient(create_app(lm_deploy))
    codes = [client.post("/generate", json={"prompts": ["a", "b", "c", "d"], "max_new_tokens": 1}).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert client.get("/metrics").json()["clients_tracked"] == 1


def test_bundles_that_must_not_be_served(tmp_path):
    with pytest.raises(GateFailedError, match="failed its release gate"):
        create_app(make_lm_deploy(tmp_path / "failed", gate_passed=False))
    assert TestClient(create_app(tmp_path / "failed", allow_failed_gate=True)).get("/health").status_code == 200
    longer = {"decoding": "greedy", "temperature": 1.0, "top_k": None, "max_new_tokens": 33}
    with pytest.raises(ArtifactError, match=r"max_new_tokens 33 is outside the audited 1\.\.32 for greedy"):
        create_app(make_lm_deploy(tmp_path / "longer", generation=longer))
    hot = {"decoding": "sample", "temperature": 0.5, "top_k": 40, "max_new_tokens": 8}
    with pytest.raises(ArtifactError, match="temperature 0.5 differs from the audited 1.0"):
        create_app(make_lm_deploy(tmp_path / "hot", generation=hot))
    old = make_lm_deploy(tmp_path / "old")
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["generation"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="no generation policy .* run `distillguard export` again"):
        create_app(old)
