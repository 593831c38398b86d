"""`distillguard serve` as a user runs it: a real uvicorn process on 127.0.0.1, attacked with
bad input and floods (bounded loops, loopback only); and `export --onnx` against PyTorch."""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest
from conftest import run_cli

from distillguard.serve.server import free_port, start_local, stop_local

BUDGET = 300


@pytest.fixture(scope="module")
def server(finished_run, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "server.log"
    gate = json.loads((finished_run / "deploy" / "manifest.json").read_text())["gate_passed"]
    process, url = start_local(finished_run / "deploy", log, "--query-budget", str(BUDGET), "--budget-window", "600",
                                *([] if gate else ["--allow-failed-gate"]))
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client, process, log
    stop_local(process)


def valid_rows(client: httpx.Client, n: int, value: float = 0.5) -> list[dict]:
    names = [f["name"] for f in client.get("/schema").json()["features"]]
    return [{name: value + 0.01 * i for name in names} for i in range(n)]


def test_abuse_is_answered_4xx_and_the_server_stays_healthy(server):
    client, process, log = server
    row = valid_rows(client, 1, value=31415.92653)[0]
    name = next(iter(row))
    bad = {
        "truncated JSON": b'{"rows": [{',
        "not JSON": b"rows=1",
        "trailing garbage": b'{"rows": []} x',
        "empty body": b"",
        "not UTF-8": b"\xff\xfe\x00",
        "deep nesting": b"[" * 100_000,
        "NaN": json.dumps({"rows": [{**row, name: float("nan")}]}).encode(),
        "Infinity": json.dumps({"rows": [{**row, name: float("inf")}]}).encode(),
        "1e999": json.dumps({"rows": [{**row}]}).replace("31415.92653", "1e999", 1).encode(),
        "string value": json.dumps({"rows": [{**row, name: "1.0"}]}).encode(),
        "null value": json.dumps({"rows": [{**row, name: None}]}).encode(),
        "boolean value": json.dumps({"rows": [{**row, name: True}]}).encode(),
        "object value": json.dumps({"rows": [{**row, name: {"v": 1}}]}).encode(),
        "rows not a list": json.dumps({"rows": row}).encode(),
        "row not an object": json.dumps({"rows": [list(row.values())]}).encode(),
        "top-level array": json.dumps([row]).encode(),
        "missing feature": json.dumps({"rows": [{k: v for k, v in row.items() if k != name}]}).encode(),
        "extra feature": json.dumps({"rows": [{**row, "is_member": 1}]}).encode(),
        "extra top-level field": json.dumps({"rows": [row], "return_logits": True}).encode(),
        "no rows": json.dumps({"rows": []}).encode(),
        "oversized body": b'{"rows": [' + b" " * 2_000_000 + b"]}",
        "10,000-row batch": json.dumps({"rows": [row] * 10_000}).encode(),
        "1,001-row batch": json.dumps({"rows": [{k: 0 for k in row}] * 1001}).encode(),
    }
    statuses = {}
    for what, body in bad.items():
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        statuses[what] = response.status_code
        assert 400 <= response.status_code < 500, (what, response.status_code, response.text[:200])
        assert set(response.json()) == {"error"} and "\n" not in response.json()["error"], what
    assert statuses["oversized body"] == statuses["10,000-row batch"] == statuses["1,001-row batch"] == 413
    assert statuses["missing feature"] == statuses["string value"] == 422 and statuses["NaN"] == 400
    streamed = client.post("/predict", content=(b" " * 65536 for _ in range(40)))  # chunked, no Content-Length
    assert streamed.status_code == 413
    assert client.get("/health").json() == {"status": "ok"} and process.poll() is None
    assert client.post("/predict", json={"rows": [row]}).status_code == 200
    metrics = client.get("/metrics").json()
    assert not any(status.startswith("5") for status in metrics["requests"])
    server_log = log.read_text()
    assert "31415" not in server_log and "92653" not in server_log
    assert all(json.loads(line)["event"] for line in server_log.splitlines() if line.startswith("{"))


def test_a_query_flood_from_one_client_gets_429_and_others_are_still_served(server):
    client, process, _ = server
    used = client.get("/metrics").json()["rows_predicted"]  # rows this client (127.0.0.1) already spent
    rows = valid_rows(client, 10)
    answers = [client.post("/predict", json={"rows": rows}).status_code for _ in range(2 * BUDGET // 10 + 5)]
    granted = (BUDGET - used) // 10
    assert answers[:granted] == [200] * granted and set(answers[granted:]) == {429}
    refused = client.post("/predict", json={"rows": rows})
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 600
    assert refused.json()["error"].startswith(f"query budget exhausted: {BUDGET} rows per 600 s per client")
    forged = client.post("/predict", json={"rows": rows}, headers={"X-Forwarded-For": "198.51.100.9"})
    assert forged.status_code == 429  # no trusted proxy: a client cannot rename itself
    other = httpx.HTTPTransport(local_address="127.0.0.2")  # another client on the loopback network
    with httpx.Client(base_url=str(client.base_url), transport=other, timeout=30) as second:
        assert second.post("/predict", json={"rows": rows}).status_code == 200
    assert client.get("/health").status_code == 200 and process.poll() is None
    assert not any(s.startswith("5") for s in client.get("/metrics").json()["requests"])


def test_behind_a_trusted_proxy_the_budget_follows_x_forwarded_for(finished_run, tmp_path):
    gate = json.loads((finished_run / "deploy" / "manifest.json").read_text())["gate_passed"]
    process, url = start_local(finished_run / "deploy", tmp_path / "log", "--trusted-proxy", "127.0.0.1",
                                "--query-budget", "5", *([] if gate else ["--allow-failed-gate"]))
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            rows = valid_rows(client, 5)
            first = {"X-Forwarded-For": "198.51.100.1"}
            assert client.post("/predict", json={"rows": rows}, headers=first).status_code == 200
            assert client.post("/predict", json={"rows": rows[:1]}, headers=first).status_code == 429
            second = {"X-Forwarded-For": "198.51.100.2"}
            assert client.post("/predict", json={"rows": rows}, headers=second).status_code == 200
    finally:
        stop_local(process)
    assert '"client": "198.51.100.1"' in (tmp_path / "log").read_text()


def test_serve_refuses_a_bundle_whose_gate_failed(finished_run, tmp_path):
    deploy = tmp_path / "deploy"
    shutil.copytree(finished_run / "deploy", deploy)
    manifest = json.loads((deploy / "manifest.json").read_text())
    (deploy / "manifest.json").write_text(json.dumps({**manifest, "gate_passed": False}))
    result = run_cli("serve", str(deploy), "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: ") and "--allow-failed-gate" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_onnx_matches_pytorch_on_the_test_split(finished_run, tmp_path):
    import onnxruntime

    from distillguard import load_bundle
    from distillguard.config import load_spec
    from distillguard.data import load_members, load_role

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    result = run_cli("export", str(run / "spec.toml"), "--run-dir", str(run), "--onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (run / "deploy" / "model.onnx").is_file() and "onnx = true" in (run / "spec.toml").read_text()
    spec = load_spec(run / "spec.toml")
    schema, _ = load_members(spec.data, seed=spec.run.seed)
    X = load_role(spec.data, "test", schema=schema, seed=spec.run.seed).X
    session = onnxruntime.InferenceSession(str(run / "deploy" / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx = session.run(["probabilities"], {"features": X.astype(np.float32)})[0]
    torch_probs = load_bundle(run / "deploy").predict_proba(X)
    assert onnx.shape == torch_probs.shape == (len(X), len(schema.classes)) and len(X) >= 100
    assert np.abs(onnx - torch_probs).max() <= 1e-5
    assert np.all(np.argmax(onnx, axis=1) == np.argmax(torch_probs, axis=1))
    manifest = json.loads((run / "deploy" / "manifest.json").read_text())
    assert len(manifest["onnx_sha256"]) == 64
    card = (run / "deploy" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: distillguard") and "## Release policy" in card
