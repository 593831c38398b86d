"""The FastAPI application: GET /health, /schema, /metrics and POST /predict (a causal LM: POST /generate).

:func:`create_app` loads and checks a deploy folder (the bundle's hashes, its release
policy against the audited form, its gate) and returns the app; tests drive it in-process
or under uvicorn. Predictions are answered in the bundle's release form only. Client
mistakes are 4xx with ``{"error": ...}``; an exhausted query budget is a 429 with
``Retry-After``. Each request is logged as one JSON line (method, path, status, rows,
milliseconds, client), never with a feature value.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from distillguard.bundle import Bundle
from distillguard.serve.budget import QueryBudget
from distillguard.serve.bundle_check import is_lm_folder, open_bundle
from distillguard.serve.http import (add_health_and_metrics, add_observability, budget_exhausted, log, log_event,
                                     read_body)
from distillguard.serve.metrics import Metrics
from distillguard.serve.schema import parse_json, parse_rows, to_matrix

#: Environment variable through which ``--workers N`` hands each worker process its settings.
SETTINGS_ENV = "DISTILLGUARD_SERVE_SETTINGS"
ENDPOINTS = "GET /health, GET /schema, GET /metrics, POST /predict"
#: Requests of at most this many rows are predicted on the event loop, larger ones in the thread pool.
INLINE_ROWS = 64


@dataclass
class _State:
    bundle: Bundle
    limits: dict[str, Any]
    budget: QueryBudget
    metrics: Metrics


def create_app(deploy_dir: str | Path, *, allow_failed_gate: bool = False, limits: dict[str, Any] | None = None,
               clock=time.monotonic) -> FastAPI:
    """The service for ``deploy_dir``; raises a :class:`DistillGuardError` for a bundle it must not serve.

    ``limits`` overrides the bundle's serving limits (``query_budget``, ``budget_window_seconds``,
    ``max_rows``, ``max_body_bytes``).
    """
    if is_lm_folder(Path(deploy_dir)):
        from distillguard.serve.generate import create_lm_app

        return create_lm_app(deploy_dir, allow_failed_gate=allow_failed_gate, limits=limits, clock=clock)
    bundle = open_bundle(Path(deploy_dir), allow_failed_gate=allow_failed_gate)
    merged = {**bundle.serving_, **{k: v for k, v in (limits or {}).items() if v is not None}}
    state = _State(bundle, merged, QueryBudget(merged["query_budget"], merged["budget_window_seconds"], clock=clock),
                   Metrics())
    app = FastAPI(title="distillguard serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state
    add_observability(app, state.metrics, endpoints=ENDPOINTS)
    _add_routes(app, state)
    log_event("ready", deploy=str(deploy_dir), output=bundle.release_["output"], features=len(bundle.feature_names_),
              query_budget=merged["query_budget"], budget_window_seconds=merged["budget_window_seconds"])
    return app


def configure_process() -> None:
    """A serving process: JSON log lines on stderr, and one torch thread per request (small
    batches run fastest that way, and concurrent requests share the cores)."""
    import torch

    torch.set_num_threads(1)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def app_from_environment() -> FastAPI:
    """The factory each uvicorn worker calls under ``--workers N`` (settings from :data:`SETTINGS_ENV`)."""
    configure_process()
    settings = json.loads(os.environ[SETTINGS_ENV])
    return create_app(settings["deploy_dir"], allow_failed_gate=settings["allow_failed_gate"],
                      limits=settings["limits"])


def _add_routes(app: FastAPI, state: _State) -> None:
    bundle, limits = state.bundle, state.limits
    classes = bundle.classes_.tolist()
    types = bundle.feature_types_

    add_health_and_metrics(app, state.metrics, state.budget)

    @app.get("/schema")
    async def schema() -> dict:
        return {"features": [{"name": n, "type": t} for n, t in types.items()], "classes": classes,
                "release": bundle.release_, "max_rows": limits["max_rows"], "max_body_bytes": limits["max_body_bytes"],
                "query_budget": limits["query_budget"], "budget_window_seconds": limits["budget_window_seconds"]}

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        client = request.client.host if request.client else "unknown"
        wait = state.budget.retry_after(client)
        if wait is None:
            rows = parse_rows(parse_json(await read_body(request, limits["max_body_bytes"])), types,
                              max_rows=limits["max_rows"])
            wait = state.budget.take(client, len(rows))
        if wait is not None:
            return budget_exhausted(request, limits, wait, unit="rows")
        X = to_matrix(rows, types)
        # A small batch takes well under a millisecond: answering it on the event loop beats a thread hop
        # (and the GIL hand-offs of many threads); a large one goes to the thread pool so others are not held up.
        predictions = (bundle.predict_released(X) if len(rows) <= INLINE_ROWS
                       else await run_in_threadpool(bundle.predict_released, X))
        request.state.rows = len(rows)
        return JSONResponse({"output": bundle.release_["output"], "classes": classes, "predictions": predictions})
