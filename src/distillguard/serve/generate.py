"""The causal-LM service: GET /health, /schema, /metrics and POST /generate.

A language model's release is its decoding: the bundle records the one the audit's probes
generated with (greedy, or sampling at temperature 1 with their top-k) and the most new
tokens they drew, and this service answers with exactly that. A client may ask for fewer
tokens, never another decoding: a completion drawn another way, or longer, is one the
audit never measured for memorized secrets. Prompts count against the client's query
budget; logs carry counts, never a prompt or a completion.

Request: ``{"prompts": ["...", ...], "max_new_tokens": N}`` (``max_new_tokens`` optional).
Response: ``{"generation": {decoding, temperature, top_k, max_new_tokens}, "completions": [...]}``.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from distillguard.serve.budget import QueryBudget
from distillguard.serve.bundle_check import LMBundle, open_lm_bundle
from distillguard.serve.http import add_health_and_metrics, add_observability, budget_exhausted, log_event, read_body
from distillguard.serve.metrics import Metrics
from distillguard.serve.schema import RequestError, parse_json

ENDPOINTS = "GET /health, GET /schema, GET /metrics, POST /generate"
REQUEST_KEYS = ("prompts", "max_new_tokens")


@dataclass
class _State:
    bundle: LMBundle
    limits: dict[str, Any]
    budget: QueryBudget
    metrics: Metrics
    context: int


def create_lm_app(deploy_dir: str | Path, *, allow_failed_gate: bool = False, limits: dict[str, Any] | None = None,
                  clock=time.monotonic) -> FastAPI:
    """The generation service for a causal-LM ``deploy_dir``; raises a DistillGuardError for a bundle it must not serve."""
    from distillguard.lm.models import context_length

    bundle = open_lm_bundle(Path(deploy_dir), allow_failed_gate=allow_failed_gate)
    merged = {**bundle.serving, **{k: v for k, v in (limits or {}).items() if v is not None}}
    state = _State(bundle, merged, QueryBudget(merged["query_budget"], merged["budget_window_seconds"], clock=clock),
                   Metrics(), context_length(bundle.model))
    app = FastAPI(title="distillguard serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state
    add_observability(app, state.metrics, endpoints=ENDPOINTS)
    _add_routes(app, state)
    log_event("ready", deploy=str(deploy_dir), generation=bundle.generation, query_budget=merged["query_budget"],
              budget_window_seconds=merged["budget_window_seconds"])
    return app


def parse_generation_request(payload: Any, *, max_prompts: int, max_new_tokens: int) -> tuple[list[str], int]:
    """``(prompts, new tokens)`` from a parsed body; RequestError (422) naming the field otherwise."""
    if not isinstance(payload, dict):
        raise RequestError(422, f'body: expected a JSON object {{"prompts": [...]}}, got {type(payload).__name__}')
    extra = sorted(set(payload) - set(REQUEST_KEYS))
    if extra:
        raise RequestError(422, f"{extra[0][:60]!r}: unknown field; expected {', '.join(REQUEST_KEYS)} (the decoding "
                                "is the audited one and cannot be changed)")
    prompts = payload.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise RequestError(422, "prompts: expected a non-empty list of strings")
    if len(prompts) > max_prompts:
        raise RequestError(413, f"prompts: {len(prompts)} given; at most {max_prompts} per request")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise RequestError(422, f"prompts[{i}]: expected a non-empty string, got "
                                    f"{'an empty string' if isinstance(prompt, str) else type(prompt).__name__}")
    tokens = payload.get("max_new_tokens", max_new_tokens)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= max_new_tokens:
        raise RequestError(422, f"max_new_tokens: expected an integer from 1 to {max_new_tokens} (the audited "
                                f"maximum), got {tokens if isinstance(tokens, int | float) else type(tokens).__name__}")
    return prompts, tokens


def _encode(state: _State, prompts: list[str], tokens: int) -> list[list[int]]:
    """Prompt token ids; a prompt too long for the context is the client's mistake (422, named by index)."""
    from distillguard.lm.probes.scoring import encode_prompts

    ids = encode_prompts(state.bundle.tokenizer, prompts)
    for i, row in enumerate(ids):
        if not row or len(row) + tokens > state.context:
            raise RequestError(422, f"prompts[{i}]: {len(row)} tokens plus {tokens} new tokens exceed the model's "
                                    f"context of {state.context}; shorten the prompt or ask for fewer tokens")
    return ids


def _generate(state: _State, ids: list[list[int]], tokens: int) -> list[str]:
    """Completions in the bundle's decoding (a fresh sampling seed per request)."""
    from distillguard.lm.probes.generation import generate_continuations, special_ids

    tokenizer, generation = state.bundle.tokenizer, state.bundle.generation
    pad, eos = special_ids(tokenizer)
    out = generate_continuations(state.bundle.model, ids, max_new_tokens=tokens,
                                 do_sample=generation["decoding"] == "sample", top_k=generation["top_k"],
                                 temperature=generation["temperature"], seed=secrets.randbits(31),
                                 pad_token_id=pad, eos_token_id=eos)
    return [tokenizer.decode(group[0], skip_special_tokens=True) for group in out]


def _add_routes(app: FastAPI, state: _State) -> None:
    limits, generation = state.limits, state.bundle.generation

    add_health_and_metrics(app, state.metrics, state.budget)

    @app.get("/schema")
    async def schema() -> dict:
        return {"generation": generation, "context": state.context, "max_prompts": limits["max_rows"],
                "max_body_bytes": limits["max_body_bytes"], "query_budget": limits["query_budget"],
                "budget_window_seconds": limits["budget_window_seconds"]}

    @app.post("/generate")
    async def generate(request: Request) -> JSONResponse:
        client = request.client.host if request.client else "unknown"
        wait = state.budget.retry_after(client)
        if wait is None:
            prompts, tokens = parse_generation_request(
                parse_json(await read_body(request, limits["max_body_bytes"])), max_prompts=limits["max_rows"],
                max_new_tokens=generation["max_new_tokens"])
            ids = _encode(state, prompts, tokens)
            wait = state.budget.take(client, len(prompts))
        if wait is not None:
            return budget_exhausted(request, limits, wait, unit="prompts")
        completions = await run_in_threadpool(_generate, state, ids, tokens)
        request.state.rows = len(prompts)
        return JSONResponse({"generation": {**generation, "max_new_tokens": tokens}, "completions": completions})
