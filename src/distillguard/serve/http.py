"""What both services share: JSON error bodies, request logging and metrics, body size limits.

The classifier service (:mod:`distillguard.serve.app`) and the causal-LM one
(:mod:`distillguard.serve.generate`) differ in their routes only. Logs carry counts,
codes and names, never a feature value or a prompt.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from distillguard.serve.metrics import Metrics
from distillguard.serve.schema import RequestError

log = logging.getLogger("distillguard.serve")

__all__ = ["add_health_and_metrics", "add_observability", "budget_exhausted", "error", "log", "log_event", "read_body"]


def log_event(event: str, **fields: Any) -> None:
    """One structured log line; callers pass counts, codes and names only, never feature values."""
    log.info(json.dumps({"event": event, **fields}, default=str))


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def add_observability(app: FastAPI, metrics: Metrics, *, endpoints: str) -> None:
    """Log and count every request; answer a client mistake or an unknown path with a one-line JSON error."""
    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        request.state.rows = 0
        try:
            response = await call_next(request)
        except Exception as bug:  # a bug, not a client mistake: logged by type only
            log_event("internal_error", path=request.url.path[:100], error=type(bug).__name__)
            response = error(500, "internal error")
        seconds = time.perf_counter() - start
        metrics.record(response.status_code, seconds, request.state.rows)
        log_event("request", method=request.method, path=request.url.path[:100], status=response.status_code,
                  rows=request.state.rows, ms=round(1000 * seconds, 3),
                  client=request.client.host if request.client else None,
                  error=getattr(request.state, "error", None))
        return response

    @app.exception_handler(RequestError)
    async def client_mistake(request: Request, mistake: RequestError):
        request.state.error = mistake.message
        return error(mistake.status, mistake.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, failure: StarletteHTTPException):
        what = "no such endpoint" if failure.status_code == 404 else str(failure.detail)
        return error(failure.status_code, f"{request.method} {request.url.path[:100]}: {what}; expected {endpoints}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(413, f"body: {declared} bytes declared; at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"body: more than {limit} bytes; at most {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def add_health_and_metrics(app: FastAPI, metrics: Metrics, budget) -> None:
    """GET /health (200 once loaded) and GET /metrics (counts, latencies, clients tracked by the budget)."""

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics_endpoint() -> dict:
        return {**metrics.snapshot(), "clients_tracked": len(budget)}


def budget_exhausted(request: Request, limits: dict[str, Any], wait: int, *, unit: str) -> JSONResponse:
    """The 429 of a spent query budget, with ``Retry-After``; ``unit`` is what the budget counts (rows, prompts)."""
    request.state.error = "query budget exhausted"
    return error(429, f"query budget exhausted: {limits['query_budget']} {unit} per "
                      f"{limits['budget_window_seconds']:g} s per client; retry after {wait} s",
                 headers={"Retry-After": str(wait)})
