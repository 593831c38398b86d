"""Shadows trained in chunks, locally or as Ray tasks, give the logits of one call for all.

The audit's Ray backend rests on one property: shadow s's logits depend on s only, not on
which other shadows share its batched call. The first tests check it for every kind of
shadow pipeline on tiny data; the Ray tests then run one small audit both ways and compare
scores.parquet and metrics.json exactly.
"""

from __future__ import annotations

import builtins
import os
import re
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import distillguard
from distillguard.audit import ray_backend
from distillguard.audit.pipelines import ShadowJob, replay_shadows
from distillguard.audit.shadows import AuditPool, paired_membership, plant_canaries
from distillguard.checkpoints import CheckpointStore
from distillguard.config import Spec
from distillguard.data.types import Schema
from distillguard.errors import ConfigError
from distillguard.runs import read_json

S, N_POOL, D, C = 4, 48, 6, 3
TINY = {"teacher": {"hidden": [16], "epochs": 4, "batch_size": 8},
        "student": {"hidden": [8], "epochs": 4, "batch_size": 8},
        "audit": {"shadows": S, "canaries": 4, "bootstrap": 0}}
KINDS = {
    "plain": {},
    # per-shadow selected rows and noise: the students' inputs differ, nothing is tiled
    "knobs": {"softlabels": {"logit_noise": 0.5, "top_k": 2},
              "transfer": {"select": "far_from_private", "keep_fraction": 0.5}},
    "ensemble": {"teacher": {**TINY["teacher"], "ensemble": 3}},
    "split-ai": {"teacher": {**TINY["teacher"], "split_ai": {"k": 3, "l": 1}}},
    # each shadow distills on its own training rows: per-shadow inputs, stacked
    "self-distill": {"teacher": {**TINY["teacher"], "split_ai": {"k": 3, "l": 1, "self_distill": True}}},
    "hamp": {"teacher": {**TINY["teacher"], "hamp": {"gamma": 0.9, "alpha": 0.1}}},
    "pate": {"privacy": {"mechanism": "pate", "teachers": 3, "sigma": 1.0}},
    "dp-sgd": {"privacy": {"mechanism": "dp-sgd", "noise_multiplier": 1.0, "delta": 1e-3},
               "teacher": {**TINY["teacher"], "epochs": 2}},
}


def _job(kind: str) -> ShadowJob:
    spec = Spec.model_validate({**TINY, **KINDS[kind]})
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(C, D))

    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, C, n)
        return (centers[y] + rng.normal(size=(n, D))).astype(np.float32), y

    X, y = rows(N_POOL)
    pool = AuditPool(X, y, np.r_[np.ones(N_POOL // 2, bool), np.zeros(N_POOL // 2, bool)],
                     [f"r{i}" for i in range(N_POOL)])
    schema = Schema([f"f{i}" for i in range(D)], list(range(C)), (D,))
    canaries = plant_canaries(X, n_classes=C, count=4, duplicates=2, n_shadows=S, seed=0)
    eval_sets = {"pool": X, "population": rows(20)[0], "canaries": canaries.X}
    return ShadowJob(spec, schema, pool, canaries, paired_membership(N_POOL, S, seed=0), rows(64)[0], eval_sets)


def _chunked(job: ShadowJob, chunks: list[list[int]]) -> tuple[dict, dict]:
    parts = [replay_shadows(job, ids) for ids in chunks]
    return tuple({k: np.concatenate([p[i][k] for p in parts]) for k in parts[0][i]} for i in (0, 1))


def _assert_same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for name in x:
            np.testing.assert_array_equal(x[name], y[name], err_msg=name)


@pytest.mark.parametrize("kind", list(KINDS))
def test_shadows_trained_in_chunks_equal_one_call_for_all(kind: str) -> None:
    job = _job(kind)
    whole = replay_shadows(job, list(range(S)))
    assert whole[1]["pool"].shape == (S, N_POOL, C)
    _assert_same(_chunked(job, [[0], [1, 2, 3]]), whole)
    if kind != "dp-sgd":  # DP-SGD shadows train one by one anyway (and slowly): one split is enough
        _assert_same(_chunked(job, [[0, 1], [2, 3]]), whole)


def test_shadow_ids_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match=r"subset of range\(4\)"):
        replay_shadows(_job("plain"), [3, 4])


def test_missing_ray_is_a_one_line_config_error(monkeypatch, tmp_path) -> None:
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError) as error:
        ray_backend.require_ray()
    assert str(error.value) == '[audit].backend = "ray" needs Ray: pip install "distillguard[ray]"'
    # distillguard.run says so before it trains anything
    (tmp_path / "spec.toml").write_text('[data]\nbuiltin = "digits"\n[audit]\nbackend = "ray"\n')
    with pytest.raises(ConfigError, match="needs Ray"):
        distillguard.run(tmp_path / "spec.toml", run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


class _FakeRay:
    """Records what the session asks of Ray."""

    def __init__(self, initialized: bool) -> None:
        self.initialized, self.calls = initialized, []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs) -> None:
        self.calls.append(("init", kwargs.get("address")))
        if kwargs.get("address") == "ray://nowhere:1":
            raise ConnectionError("no cluster there")

    def shutdown(self) -> None:
        self.calls.append(("shutdown", None))


@pytest.mark.parametrize("address", [None, "auto"])
def test_a_session_shuts_down_only_the_ray_it_started(monkeypatch, address) -> None:
    fake = _FakeRay(initialized=False)
    monkeypatch.setattr(ray_backend, "require_ray", lambda: fake)
    with ray_backend.ray_session(address):
        assert fake.calls == [("init", address)]
    assert fake.calls == [("init", address), ("shutdown", None)]
    running = _FakeRay(initialized=True)  # the caller's own instance: used, left running
    monkeypatch.setattr(ray_backend, "require_ray", lambda: running)
    with ray_backend.ray_session(address):
        pass
    assert running.calls == []


def test_an_unreachable_cluster_is_a_config_error_naming_the_address(monkeypatch) -> None:
    monkeypatch.setattr(ray_backend, "require_ray", lambda: _FakeRay(initialized=False))
    with pytest.raises(ConfigError, match=r"ray_address = 'ray://nowhere:1': cannot connect"):
        with ray_backend.ray_session("ray://nowhere:1"):
            pass


def test_ray_settings_are_checked_and_left_out_of_the_fingerprint() -> None:
    with pytest.raises(ValueError, match=re.escape("""ray_address = 'auto' applies to backend = "ray" """)):
        Spec.model_validate({"audit": {"ray_address": "auto"}})
    local = Spec.model_validate({"audit": {"shadows": 4}})
    on_ray = Spec.model_validate({"audit": {"shadows": 4, "backend": "ray", "ray_address": "auto",
                                            "ray_shadows_per_task": 1, "ray_cpus_per_task": 2}})
    assert local.audit.fingerprint_params() == on_ray.audit.fingerprint_params()
    assert "backend" not in local.audit.fingerprint_params()


# ---- with Ray ---------------------------------------------------------------------------------

AUDIT_SPEC = """
[run]
name = "{name}"
[data]
builtin = "purchase-synth"
[data.sizes]
members = 100
nonmembers = 100
transfer = 200
test = 100
[data.synth]
features = 40
classes = 5
clusters = 3
[teacher]
hidden = [32]
epochs = 6
[student]
hidden = [16]
epochs = 6
[audit]
shadows = 6
canaries = 8
bootstrap = 10
backend = "{backend}"
ray_shadows_per_task = 4
"""


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'distillguard[ray]')")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Workers must import this checkout's distillguard, as the driver does.
    src = os.path.dirname(os.path.dirname(distillguard.__file__))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": src, "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def _run(tmp_path, backend: str):
    (tmp_path / f"{backend}.toml").write_text(AUDIT_SPEC.format(name=backend, backend=backend))
    started = time.perf_counter()
    distillguard.run(tmp_path / f"{backend}.toml", run_dir=tmp_path / backend)
    return tmp_path / backend, time.perf_counter() - started


def test_ray_audit_writes_the_local_audit_scores(tmp_path, ray) -> None:
    threads = torch.get_num_threads()
    # both runs at the tasks' thread count (ray_cpus_per_task = 1): the teacher stage runs in this process for both,
    # and a teacher trained on 2 threads differs in the last bits (the label-smoothed loss reduces in another order)
    torch.set_num_threads(1)
    try:
        local, local_s = _run(tmp_path, "local")
        on_ray, ray_s = _run(tmp_path, "ray")
    finally:
        torch.set_num_threads(threads)
    print(f"\naudit run, local: {local_s:.1f}s, ray: {ray_s:.1f}s")
    a, b = (pq.read_table(run / "audit" / "scores.parquet").to_pandas() for run in (local, on_ray))
    assert len(a) > 0 and a.drop(columns="score").equals(b.drop(columns="score"))
    np.testing.assert_array_equal(a["score"].to_numpy(), b["score"].to_numpy())
    metrics = [read_json(run / "audit" / "metrics.json") for run in (local, on_ray)]
    assert metrics[0] == metrics[1]
    assert metrics[0]["shadows"]["canaries"] == 8
    assert ray.is_initialized()  # the audit used the test's instance and left it running


def test_finished_chunks_are_resumed_from_checkpoints(tmp_path, ray) -> None:
    job = _job("plain")
    job = ShadowJob(Spec.model_validate({**TINY, "audit": {**TINY["audit"], "backend": "ray",
                                                           "ray_shadows_per_task": 2}}),
                    job.schema, job.pool, job.canaries, job.membership, job.transfer_X, job.eval_sets)
    store = CheckpointStore(tmp_path / "ck", stage="audit", every_seconds=0)
    store.open("fp")
    done = []
    teachers, students = ray_backend.train_shadows_on_ray(job, checkpoints=store, on_chunk=done.append)
    assert done == [2, 2]
    _assert_same((teachers, students), replay_shadows(job, list(range(S))))
    # A rerun finds both chunks finished; a planted marker proves chunk 0 came from disk.
    saved = store.slot("ray-shadows0-1").load()
    saved["student"]["pool"][:] = 7.0
    store.slot("ray-shadows0-1").save(saved, point="test")
    _, again = ray_backend.train_shadows_on_ray(job, checkpoints=store)
    assert (again["pool"][:2] == 7.0).all()
    np.testing.assert_array_equal(again["pool"][2:], students["pool"][2:])
