"""Streamed calls: upstream SSE bytes pass through as they arrive; the usage chunk (asked for with
stream_options.include_usage) is priced and gets `"cost"`, or is dropped when the client did not
ask for usage (OpenAI's behaviour; set always_include_stream_usage to keep it).

If the client goes away mid-stream the proxy stops writing but keeps reading the upstream to its
end (bounded by the upstream timeout) so the usage event carries what was really generated. If
the upstream itself breaks off, the event is a failure with usage estimated from what was seen."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

from services.proxy import sse, upstream
from services.proxy.anthropic import StreamTranslator
from services.proxy.errors import UpstreamError
from services.proxy.mock import mock_stream_chunks
from services.proxy.routing import ANTHROPIC
from services.proxy.usage import estimated_usage, usage_from_openai
from shared.events import TokenUsage, utcnow

if TYPE_CHECKING:
    from services.proxy.relay import Call, Relay

_CLIENT_GONE = (ConnectionResetError, aiohttp.ClientConnectionResetError, ConnectionError)


class _Outcome:
    """What the stream produced so far."""

    __slots__ = ("usage", "cost", "response_model", "chunks", "first_at", "priced", "relay", "call")

    def __init__(self, relay: Relay, call: Call) -> None:
        self.relay, self.call = relay, call
        self.usage: TokenUsage | None = None
        self.cost: Decimal | None = None
        self.response_model: str | None = None
        self.chunks = 0
        self.first_at: datetime | None = None
        self.priced = False

    def on_usage(self, chunk: dict[str, Any]) -> Decimal | None:
        """The usage chunk arrived: price and record the call now; its cost goes into the chunk."""
        self.usage = usage_from_openai(chunk.get("usage"))
        model = chunk.get("model")
        self.response_model = model if isinstance(model, str) else None
        _event, self.cost, _spend = self.relay.finish(
            self.call, self.usage, response_model=self.response_model, stream=True,
            completion_start_time=self.first_at or utcnow())
        self.priced = True
        return self.cost


def _prompt_chars(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        total += len(content) if isinstance(content, str) else len(orjson.dumps(content)) if content else 0
    prompt = body.get("prompt")
    return total + (len(prompt) if isinstance(prompt, str) else 0)


async def relay_stream(relay: Relay, request: web.Request, call: Call, mock: str | None = None) -> web.StreamResponse:
    target = call.target
    keep_usage = upstream.client_wants_usage(call.body) or relay.settings.always_include_stream_usage
    outcome = _Outcome(relay, call)
    upstream_response: aiohttp.ClientResponse | None = None
    t_up = time.perf_counter()
    upstream_s = 0.0
    if mock is None:
        payload = upstream.request_payload(target, call.call_type, call.body, stream=True)
        session = relay.sessions[target.origin]
        try:
            upstream_response = await session.post(target.url(call.call_type), data=payload, headers=target.headers,
                                                   timeout=relay._stream_timeouts[target.model_id])
        except asyncio.TimeoutError as exc:
            relay.fail(call, 504, f"upstream {target.api_base} did not answer within the timeout", stream=True)
            raise UpstreamError(f"Request timed out: upstream {target.api_base} did not answer in time", 504, type="timeout") from exc
        except aiohttp.ClientError as exc:
            relay.fail(call, 502, f"upstream {target.api_base} unreachable: {exc}", stream=True)
            raise UpstreamError(f"upstream {target.api_base} unreachable: {type(exc).__name__}", 502, type="api_connection_error") from exc
        if upstream_response.status >= 400:
            raw = await upstream_response.read()
            upstream_response.release()
            error = upstream.upstream_error(target, upstream_response.status, raw)
            relay.fail(call, error.status, error.message, stream=True)
            raise error
        upstream_s = time.perf_counter() - t_up

    headers = relay.headers(call, None, call.caller.spend)
    headers["Content-Type"] = "text/event-stream"
    headers["Cache-Control"] = "no-cache"
    headers["x-litellm-overhead-duration-ms"] = f"{(time.perf_counter() - call.t0 - upstream_s) * 1000:.3f}"
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    client_gone = False
    failure: tuple[int, str] | None = None

    async def send(data: bytes) -> None:
        nonlocal client_gone
        if client_gone or not data:
            return
        try:
            await response.write(data)
        except _CLIENT_GONE:
            client_gone = True

    try:
        if mock is not None:
            outcome.first_at = utcnow()
            chunks = mock_stream_chunks(target.model_group, mock, call.request_id)
            for chunk in chunks[:-1]:
                await send(sse.encode_event(chunk))
            await send(sse.rewrite_usage(sse.encode_event(chunks[-1]), outcome.on_usage, keep_usage) + b"data: [DONE]\n\n")
        else:
            assert upstream_response is not None
            translator = StreamTranslator() if target.wire == ANTHROPIC else None
            buffer = b""
            async for data in upstream_response.content.iter_any():
                if outcome.first_at is None:
                    outcome.first_at = utcnow()
                buffer += data
                block, buffer = sse.split_complete(buffer)
                if not block:
                    continue
                if translator is not None:
                    await send(_translate(translator, block, outcome, keep_usage))
                elif sse.has_usage(block):
                    await send(sse.rewrite_usage(block, outcome.on_usage, keep_usage))
                else:
                    outcome.chunks += block.count(b"data:")
                    await send(block)
            if buffer.strip():
                await send(buffer)
    except asyncio.TimeoutError:
        failure = (504, f"upstream {target.api_base} stopped sending within the timeout")
    except aiohttp.ClientError as exc:
        failure = (502, f"upstream {target.api_base} broke off the stream: {type(exc).__name__}: {exc}")
    finally:
        if upstream_response is not None:
            upstream_response.release()
        if not outcome.priced:
            # No usage chunk: the upstream broke off, or does not report usage when streaming.
            usage = estimated_usage(_prompt_chars(call.body), outcome.chunks)
            if failure is not None:
                relay.fail(call, failure[0], failure[1], usage, stream=True)
            else:
                relay.finish(call, usage, stream=True, completion_start_time=outcome.first_at,
                             metadata_extra={"usage_estimated": True, "client_disconnected": client_gone})
    if not client_gone:
        try:
            await response.write_eof()
        except _CLIENT_GONE:
            pass
    return response


def _translate(translator: StreamTranslator, block: bytes, outcome: _Outcome, keep_usage: bool) -> bytes:
    """Anthropic events -> OpenAI chunks (with the usage chunk priced) and the final [DONE]."""
    out: list[bytes] = []
    for _name, data, _raw in sse.iter_events(block):
        if not data:
            continue
        event = orjson.loads(data)
        if event.get("type") == "error":
            raise aiohttp.ClientPayloadError(str((event.get("error") or {}).get("message", "stream error")))
        for chunk in translator.feed(event):
            if "usage" in chunk:
                out.append(sse.rewrite_usage(sse.encode_event(chunk), outcome.on_usage, keep_usage))
            else:
                outcome.chunks += 1
                out.append(sse.encode_event(chunk))
        if event.get("type") == "message_stop":
            out.append(b"data: [DONE]\n\n")
    return b"".join(out)
