"""An OpenAI-compatible fake upstream, the only stand-in Tally's tests allow (real providers cost
money and are unreachable here). `make up` runs it as the demo upstream so the default config works
offline. Deterministic: usage is 20 prompt + 80 completion tokens unless the request says otherwise.

A request may steer it with a body field `x_fake` (the proxy forwards unknown fields upstream):
  {"usage": {...OpenAI usage object...}, "status": 429, "message": "...", "model": "gpt-4",
   "delay_ms": 50, "chunks": 5}
and per upstream model (the deployments of one model group, or fallback groups, differ by it):
  {"by_model": {"gpt-4o-mini-eu": {"status": 500}}} steers only a call whose body names that model.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

DEFAULT_USAGE = {"prompt_tokens": 20, "completion_tokens": 80, "total_tokens": 100}
CALLS: web.AppKey[list[dict[str, Any]]] = web.AppKey("calls", list)
STORED: web.AppKey[dict[str, dict[str, Any]]] = web.AppKey("stored_responses", dict)  # the Responses API's stored responses


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _usage(steer: dict[str, Any]) -> dict[str, Any]:
    usage = dict(DEFAULT_USAGE)
    usage.update(steer.get("usage") or {})
    usage["total_tokens"] = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
    return usage


async def _steer(request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
    body = await request.json(loads=orjson.loads)
    request.app[CALLS].append({"path": request.path, "headers": dict(request.headers), "body": body})
    steer = body.get("x_fake") or {}
    per_model = steer.get("by_model") or {}
    steer = {**steer, **(per_model.get(body.get("model")) or {})}
    if steer.get("delay_ms"):
        await asyncio.sleep(steer["delay_ms"] / 1000)
    if steer.get("status") and _still_failing(request.app[CALLS], body.get("model"), steer.get("fail_first")):
        raise _error(steer)
    return body, steer


def _still_failing(calls: list[dict[str, Any]], model: Any, fail_first: int | None) -> bool:
    """x_fake.fail_first: n makes only the model's first n calls fail (the call at hand is recorded)."""
    return fail_first is None or sum(1 for c in calls if (c["body"] or {}).get("model") == model) <= fail_first


def _error(steer: dict[str, Any]) -> web.HTTPException:
    status = int(steer["status"])
    error_class = type(f"FakeHTTP{status}", (web.HTTPError,), {"status_code": status})
    payload = {"error": {"message": steer.get("message", "fake upstream error"), "type": "fake_error", "code": str(status)}}
    headers = {"Retry-After": str(steer["retry_after"])} if "retry_after" in steer else None
    return error_class(text=orjson.dumps(payload).decode(), content_type="application/json", headers=headers)


def _content(body: dict[str, Any]) -> str:
    return "This is a fake answer from Tally's demo upstream."


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body, steer = await _steer(request)
    model = steer.get("model") or body.get("model", "fake")
    usage = _usage(steer)
    call_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if not body.get("stream"):
        return _json({
            "id": call_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": _content(body)}, "finish_reason": "stop"}],
            "usage": usage,
        })
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    words = _content(body).split(" ")
    chunks = int(steer.get("chunks") or len(words))
    for i in range(chunks):
        piece = words[i % len(words)] + ("" if i == chunks - 1 else " ")
        chunk = {"id": call_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": {"content": piece} if i else {"role": "assistant", "content": piece}, "finish_reason": None}]}
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        if steer.get("chunk_delay_ms"):
            await asyncio.sleep(steer["chunk_delay_ms"] / 1000)
    final = {"id": call_id, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    await response.write(b"data: " + orjson.dumps(final) + b"\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        usage_chunk = {"id": call_id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage}
        await response.write(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def completions(request: web.Request) -> web.Response:
    body, steer = await _steer(request)
    return _json({
        "id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
        "model": steer.get("model") or body.get("model", "fake"),
        "choices": [{"index": 0, "text": _content(body), "finish_reason": "stop", "logprobs": None}],
        "usage": _usage(steer),
    })


async def embeddings(request: web.Request) -> web.Response:
    body, steer = await _steer(request)
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    usage = {"prompt_tokens": 8 * len(items), "total_tokens": 8 * len(items)}
    usage.update(steer.get("usage") or {})
    return _json({
        "object": "list", "model": steer.get("model") or body.get("model", "fake"),
        "data": [{"object": "embedding", "index": i, "embedding": [0.0, 0.1, 0.2]} for i in range(len(items))],
        "usage": usage,
    })


async def images(request: web.Request) -> web.Response:
    body, steer = await _steer(request)
    n = int(body.get("n") or 1)
    return _json({"created": int(time.time()), "data": [{"url": f"https://example.invalid/image-{i}.png"} for i in range(n)]})


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    body, steer = await _steer(request)
    usage = {"input_tokens": 20, "output_tokens": 80, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    usage.update(steer.get("anthropic_usage") or {})
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    model = steer.get("model") or body.get("model", "fake")
    if not body.get("stream"):
        return _json({
            "id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": _content(body)}],
            "stop_reason": "end_turn", "stop_sequence": None, "usage": usage,
        })
    # Anthropic's streaming events: input usage on message_start, output usage on message_delta.
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)

    async def event(kind: str, data: dict[str, Any]) -> None:
        await response.write(f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, **data}) + b"\n\n")

    start_usage = {k: v for k, v in usage.items() if k != "output_tokens"} | {"output_tokens": 1}
    await event("message_start", {"message": {"id": message_id, "type": "message", "role": "assistant", "model": model,
                                                "content": [], "stop_reason": None, "usage": start_usage}})
    await event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    for word in _content(body).split(" "):
        await event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word + " "}})
        if steer.get("chunk_delay_ms"):
            await asyncio.sleep(steer["chunk_delay_ms"] / 1000)
    await event("content_block_stop", {"index": 0})
    await event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": usage["output_tokens"]}})
    await event("message_stop", {})
    await response.write_eof()
    return response


async def responses(request: web.Request) -> web.StreamResponse:
    """OpenAI's Responses API: one output message; usage 20 input and 80 output tokens unless
    x_fake.responses_usage says otherwise; streamed as response.created, output_text deltas and
    response.completed (which carries the usage)."""
    body, steer = await _steer(request)
    usage = {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 80,
             "output_tokens_details": {"reasoning_tokens": 0}}
    usage.update(steer.get("responses_usage") or {})
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    text = _content(body)
    response_id, item_id = f"resp_{uuid.uuid4().hex[:24]}", f"msg_{uuid.uuid4().hex[:24]}"
    item = {"type": "message", "id": item_id, "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}
    done = {"id": response_id, "object": "response", "created_at": int(time.time()), "status": "completed", "model": body.get("model"),
            "output": [item], "usage": usage, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "previous_response_id": body.get("previous_response_id")}
    previous = body.get("previous_response_id")
    if previous is not None and previous not in request.app[STORED]:
        raise _not_found(previous)
    if body.get("store", True) is not False:
        request.app[STORED][response_id] = done
    if not body.get("stream"):
        return _json(done)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    sequence = 0

    async def event(kind: str, data: dict[str, Any]) -> None:
        nonlocal sequence
        await response.write(f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, "sequence_number": sequence, **data}) + b"\n\n")
        sequence += 1

    await event("response.created", {"response": {**done, "status": "in_progress", "output": [], "usage": None}})
    for word in text.split(" "):
        await event("response.output_text.delta", {"item_id": item_id, "output_index": 0, "content_index": 0, "delta": word + " "})
    await event("response.completed", {"response": done})
    await response.write_eof()
    return response


def _not_found(response_id: str) -> web.HTTPException:
    return web.HTTPNotFound(text=orjson.dumps({"error": {"message": f"Response with id '{response_id}' not found.",
                                                         "type": "invalid_request_error", "param": None, "code": None}}).decode(),
                            content_type="application/json")


async def retrieve_response(request: web.Request) -> web.Response:
    """GET /responses/{response_id}: a stored response, or OpenAI's 404."""
    request.app[CALLS].append({"path": request.path_qs, "headers": dict(request.headers), "body": None})
    stored = request.app[STORED].get(request.match_info["response_id"])
    if stored is None:
        raise _not_found(request.match_info["response_id"])
    return _json(stored)


async def models(request: web.Request) -> web.Response:
    return _json({"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "tally"}]})


def build_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[CALLS] = []
    app[STORED] = {}
    for prefix in ("", "/v1", "/openai/v1"):
        app.router.add_post(f"{prefix}/chat/completions", chat_completions)
        app.router.add_post(f"{prefix}/completions", completions)
        app.router.add_post(f"{prefix}/embeddings", embeddings)
        app.router.add_post(f"{prefix}/images/generations", images)
        app.router.add_get(f"{prefix}/models", models)
        app.router.add_post(f"{prefix}/responses", responses)
        app.router.add_get(f"{prefix}/responses/{{response_id}}", retrieve_response)
    # Azure OpenAI: /openai/deployments/{deployment}/chat/completions?api-version=...
    app.router.add_post("/openai/deployments/{deployment}/chat/completions", chat_completions)
    app.router.add_post("/openai/deployments/{deployment}/completions", completions)
    app.router.add_post("/openai/deployments/{deployment}/embeddings", embeddings)
    app.router.add_post("/openai/deployments/{deployment}/images/generations", images)
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_post("/openai/responses", responses)  # Azure OpenAI's Responses API
    app.router.add_get("/openai/responses/{response_id}", retrieve_response)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Tally's OpenAI-compatible fake upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4010)
    args = parser.parse_args()
    from shared.service import run_service

    # A stand-in has no answers worth finishing at a stop: a call still sleeping out its `delay_ms`
    # (its client long gone) must not hold the stop for the 15 s a real service gives its calls.
    run_service(build_app(), args.host, args.port, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
