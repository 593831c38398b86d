"""The FastAPI app in-process: release forms, refusals at start, errors, budget, metrics, logs."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from serve_support import FEATURES, make_deploy, rows
from fastapi.testclient import TestClient

from distillguard import load_bundle
from distillguard.bundle import release_predictions
from distillguard.errors import ArtifactError
from distillguard.serve.app import create_app
from distillguard.serve.bundle_check import GateFailedError


def client_for(folder, *, address: str = "10.1.1.1", **kwargs) -> TestClient:
    return TestClient(create_app(folder, **kwargs), client=(address, 50000))


@pytest.mark.parametrize("release", [
    {"output": "probabilities", "top_k": None, "decimals": None},
    {"output": "probabilities", "top_k": None, "decimals": 3},
    {"output": "top_k", "top_k": 2, "decimals": 4},
    {"output": "label", "top_k": None, "decimals": None},
])
def test_predictions_are_the_bundles_in_the_release_form(tmp_path, release):
    folder = make_deploy(tmp_path / "d", release=release)
    batch = rows(25)
    response = client_for(folder).post("/predict", json={"rows": batch})
    assert response.status_code == 200
    body = response.json()
    bundle = load_bundle(folder)
    X = np.array([[r[f] for f in FEATURES] for r in batch])
    probs = bundle.predict_proba(X)
    assert body["output"] == release["output"] and body["classes"] == ["low", "mid", "high"]
    assert body["predictions"] == release_predictions(probs, ["low", "mid", "high"], release)
    assert len(set(map(json.dumps, body["predictions"]))) > 1  # the rows really differ
    if release["output"] == "probabilities" and release["decimals"] is None:
        assert np.allclose(np.sum(body["predictions"], axis=1), 1.0)


def test_single_row_equals_its_row_in_a_batch(deploy):
    client = client_for(deploy)
    batch = rows(5)
    together = client.post("/predict", json={"rows": batch}).json()["predictions"]
    alone = [client.post("/predict", json={"rows": [r]}).json()["predictions"][0] for r in batch]
    assert np.allclose(alone, together, atol=1e-7)


def test_refuses_a_bundle_that_failed_its_gate_unless_told(tmp_path):
    folder = make_deploy(tmp_path / "d", gate_passed=False)
    with pytest.raises(GateFailedError, match="failed its release gate.*--allow-failed-gate") as caught:
        create_app(folder)
    assert caught.value.exit_code == 1
    assert client_for(folder, allow_failed_gate=True).get("/health").json() == {"status": "ok"}


def test_refuses_modified_weights(deploy):
    weights = deploy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ArtifactError, match="modified after export"):
        create_app(deploy)


def test_refuses_a_release_finer_than_the_audit(deploy):
    config = json.loads((deploy / "config.json").read_text())
    config["audited_output"] = {"output": "label", "top_k": None, "decimals": None}
    (deploy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match='finer than the audited "label"; refusing'):
        create_app(deploy)


def test_refuses_feature_types_it_cannot_check(deploy, monkeypatch):
    from distillguard.bundle import Bundle

    original = Bundle.__init__

    def with_an_image_feature(self, classifier, config):  # a bundle from a newer version, say
        original(self, classifier, config)
        self.feature_types_ = {**self.feature_types_, "age": "image"}

    monkeypatch.setattr(Bundle, "__init__", with_an_image_feature)
    with pytest.raises(ArtifactError, match="feature 'age' has type 'image'"):
        create_app(deploy)


def test_budget_is_per_client_and_429_says_when(deploy):
    app = create_app(deploy, limits={"query_budget": 30, "budget_window_seconds": 600})
    first, second = TestClient(app, client=("10.0.0.1", 1)), TestClient(app, client=("10.0.0.2", 1))
    assert first.post("/predict", json={"rows": rows(20)}).status_code == 200
    refused = first.post("/predict", json={"rows": rows(11)})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "600"
    assert refused.json()["error"].startswith("query budget exhausted: 30 rows per 600 s per client")
    assert first.post("/predict", json={"rows": rows(10)}).status_code == 200   # the refused rows cost nothing
    assert first.post("/predict", json={"rows": rows(1)}).status_code == 429
    assert second.post("/predict", json={"rows": rows(30)}).status_code == 200


def test_oversized_bodies_are_413_declared_or_streamed(tmp_path):
    folder = make_deploy(tmp_path / "d", max_body_bytes=4096)
    client = client_for(folder)
    big = json.dumps({"rows": rows(100)}).encode()
    declared = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "at most 4096" in declared.json()["error"]
    streamed = client.post("/predict", content=(big[i:i + 1000] for i in range(0, len(big), 1000)))
    assert streamed.status_code == 413 and "more than 4096 bytes" in streamed.json()["error"]
    assert client.get("/health").status_code == 200


def test_unknown_paths_and_methods_are_json_4xx(deploy):
    client = client_for(deploy)
    for method, path, status in (("get", "/nope", 404), ("get", "/predict", 405), ("delete", "/health", 405)):
        response = getattr(client, method)(path)
        assert response.status_code == status and "expected GET /health" in response.json()["error"]


def test_schema_and_metrics(deploy):
    client = client_for(deploy, limits={"max_rows": 7})
    schema = client.get("/schema").json()
    assert [f["name"] for f in schema["features"]] == FEATURES and schema["max_rows"] == 7
    client.post("/predict", json={"rows": rows(3)})
    client.post("/predict", content=b"{")
    client.post("/predict", json={"rows": rows(8)})
    metrics = client.get("/metrics").json()
    assert metrics["requests"] == {"200": 2, "400": 1, "413": 1}  # /schema and one /predict; not this call
    assert metrics["rows_predicted"] == 3 and metrics["latency_ms"]["p50"] > 0


def test_logs_are_json_lines_without_feature_values(deploy, caplog):
    client = client_for(deploy)
    marked = [{**r, "income": 31415.92653} for r in rows(3)]
    with caplog.at_level(logging.INFO, logger="distillguard.serve"):
        client.post("/predict", json={"rows": marked})
        client.post("/predict", json={"rows": [{**marked[0], "visits": "31415.92653"}]})
        client.post("/predict", json={"rows": [{**marked[0], "extra": 31415.92653}]})
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "distillguard.serve"]
    requests = [line for line in lines if line["event"] == "request"]
    assert [line["status"] for line in requests] == [200, 422, 422]
    assert requests[0]["rows"] == 3 and requests[1]["error"].startswith("rows[0].visits: expected a finite number")
    assert "31415" not in caplog.text and "92653" not in caplog.text


def test_refuses_an_incomplete_language_model_folder_and_a_folder_without_manifest(tmp_path):
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (lm / "manifest.json").write_text(json.dumps({"gate_passed": True}))
    with pytest.raises(ArtifactError, match=r"model.safetensors: missing, or its sha256 differs"):
        create_app(lm)
    with pytest.raises(ArtifactError, match="manifest.json: not found; expected a deploy folder"):
        create_app(tmp_path)
