"""Streamed calls: upstream SSE bytes pass through as they arrive; the usage chunk (asked for with
stream_options.include_usage) is priced and gets `"cost"`, or is dropped when the client did not
ask for usage (OpenAI's behaviour; set always_include_stream_usage to keep it).

An upstream may report usage on every chunk (vLLM's `continuous_usage_stats`): each usage chunk
gets its cost quoted (priced, nothing settled) and the last one wins. The call is settled and
recorded once, when the stream is over, with the last usage seen; so the last chunk's cost is the
recorded cost.

If the client goes away mid-stream the proxy stops writing but keeps reading the upstream to its
end (bounded by the upstream timeout) so the usage event carries what was really generated. If
the upstream itself breaks off, sends what cannot be relayed, or the proxy shuts down first, the
event is a failure with the last usage seen (or usage estimated from what was seen)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web

from services.proxy.calls.call import Call, CallHost
from services.proxy.calls.mock import mock_stream_chunks
from services.proxy.errors import UpstreamError
from services.proxy.providers import sse
from services.proxy.providers import wire
from services.proxy.providers.anthropic import StreamTranslator
from services.proxy.providers.native import StreamDecoder
from services.proxy.providers.openai_usage import estimated_usage, usage_from_openai
from services.proxy.routing.router import ANTHROPIC
from services.proxy.transport.aiohttp_private import CoalescingStreamResponse
from services.proxy.transport.http1 import Response, UpstreamConnectionError
from shared.events import TokenUsage, utcnow

log = structlog.get_logger(__name__)

_CLIENT_GONE = (ConnectionResetError, aiohttp.ClientConnectionResetError, ConnectionError)
# The read timeout is pushed back at most this often: rescheduling a timer on every piece of a
# stream costs more than the piece's relay. A stalled stream ends after timeout .. timeout + this.
_DEADLINE_SLACK_S = 1.0


class _Outcome:
    """What the stream produced so far."""

    __slots__ = ("usage", "response_model", "chunks", "first_at", "invalid", "relay", "call", "quote")

    def __init__(self, relay: CallHost, call: Call, quote: bool) -> None:
        self.relay, self.call = relay, call
        self.quote = quote  # the client sees the usage chunks: each gets its cost
        self.usage: TokenUsage | None = None  # the last usage chunk's
        self.response_model: str | None = None
        self.chunks = 0
        self.first_at: datetime | None = None
        self.invalid = 0  # usage chunks that were not JSON (passed on untouched, not counted)

    def on_usage(self, chunk: dict[str, Any]) -> Decimal | None:
        """A usage chunk arrived: it replaces any earlier one. Its cost is quoted, not settled:
        the call is settled once, at the end of the stream."""
        usage = self.usage = usage_from_openai(chunk.get("usage"))
        model = chunk.get("model")
        self.response_model = model if isinstance(model, str) else None
        if not self.quote:
            return None  # the chunk is dropped: no cost to show
        call = self.call
        return self.relay.quoter.quote_usage(call.target, call.call_type, usage, self.response_model)

    def on_invalid(self, raw: bytes) -> None:
        if not self.invalid:
            log.warning("stream_usage_chunk_unreadable", request_id=self.call.request_id, chunk=raw[:200].decode(errors="replace"))
        self.invalid += 1


def prompt_chars(body: dict[str, Any]) -> int:
    """The characters of a chat or completion request's prompt, for a token estimate."""
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        total += len(content) if isinstance(content, str) else len(orjson.dumps(content)) if content else 0
    prompt = body.get("prompt")
    return total + (len(prompt) if isinstance(prompt, str) else 0)


class _Pump:
    """Reads the upstream stream to its end, passing bytes to the client while it listens, and
    records the call exactly once when the stream is over."""

    def __init__(self, relay: CallHost, call: Call, response: web.StreamResponse, keep_usage: bool,
                 upstream_response: Response | None = None) -> None:
        self.relay, self.call, self.response, self.keep_usage = relay, call, response, keep_usage
        self.upstream_response = upstream_response
        self.outcome = _Outcome(relay, call, keep_usage)
        self.client_gone = False
        self.recorded = False
        self.translator = StreamTranslator() if call.target.wire == ANTHROPIC else None
        # Streams that are not passed through as they are: (bytes -> client bytes, closing bytes).
        if call.inbound is not None:
            self.stage = call.inbound.stream_stage(call.target, self.outcome.on_usage)
        elif call.target.native is not None:
            self.stage = _NativeStage(call.target.native.stream_decoder(call.body), self.outcome, keep_usage)
        else:
            self.stage = None
        self.buffer = b""
        self.tail = b""  # the stream's last bytes, written together with its end

    async def send(self, data: bytes) -> None:
        if self.client_gone or not data:
            return
        upstream_response = self.upstream_response
        if upstream_response is None or (upstream_response.complete and not upstream_response.buffered):
            self.tail += data  # nothing more will come: one write with the end of the stream
            return
        try:
            await self.response.write(data)
        except _CLIENT_GONE:
            self.client_gone = True

    async def finish(self) -> None:
        """The end of the stream for the client, with the bytes held back for it."""
        if self.client_gone:
            return
        try:
            await self.response.write_eof(self.tail)
        except _CLIENT_GONE:
            self.client_gone = True

    async def feed(self, data: bytes) -> None:
        if self.outcome.first_at is None:
            self.outcome.first_at = utcnow()
        if self.stage is not None:
            await self.send(self.stage.feed(data))
            return
        self.buffer += data
        block, self.buffer = sse.split_complete(self.buffer)
        if not block:
            return
        if self.translator is not None:
            await self.send(_translate(self.translator, block, self.outcome, self.keep_usage))
        else:
            self.outcome.chunks += block.count(b"data:")  # for the estimate, should no usage chunk be readable
            if sse.has_usage(block):
                block = sse.rewrite_usage(block, self.outcome.on_usage, self.keep_usage, self.outcome.on_invalid)
            await self.send(block)

    async def pump(self, upstream_response: Response) -> None:
        """Read to the end; on the way out (normally, on error, or cancelled) record the call."""
        failure: tuple[int, str] | None = None
        target = self.call.target
        read_timeout = self.call.timeout_s or self.relay.timeouts[target.model_id]
        loop = asyncio.get_running_loop()
        finished = handed_off = False
        try:
            async with asyncio.timeout(read_timeout) as deadline:
                async for data in upstream_response.iter_chunks():
                    now = loop.time()
                    if deadline.when() - now < read_timeout - _DEADLINE_SLACK_S:  # type: ignore[operator]
                        deadline.reschedule(now + read_timeout)  # the timeout runs between two reads
                    await self.feed(data)
            finished = True  # iter_chunks gave the connection back to its pool
            if self.stage is not None:
                await self.send(self.stage.end())
            elif self.buffer.strip():
                await self.send(self.buffer)
        except TimeoutError:
            failure = (504, f"upstream {target.api_base} stopped sending within the timeout")
        except UpstreamConnectionError as exc:
            failure = (502, f"upstream {target.api_base} broke off the stream: {exc}")
        except asyncio.CancelledError:
            if self.relay.stopping or self.call.detached:
                # Shutdown (or a background reader cancelled): record what was seen, exactly once.
                self.record((503, f"cancelled mid-stream: the proxy shut down (upstream {target.api_base})"))
                raise
            # The server cancelled the handler (client gone): finish reading in the background so
            # the usage event carries what the upstream really generated.
            self.client_gone = handed_off = True
            self.call.detached = True  # the background task settles the call, not the handler
            task = loop.create_task(self.pump(upstream_response))
            self.relay.background.add(task)  # keep a reference until it is done
            task.add_done_callback(self.relay.background.discard)
            raise
        except Exception as exc:  # a bug, or an upstream stream this proxy cannot relay: record it all the same
            log.exception("stream_relay_failed", request_id=self.call.request_id, api_base=target.api_base)
            failure = (500, f"the proxy could not relay the stream: {type(exc).__name__}: {exc}")
        finally:
            if not finished and not handed_off:
                upstream_response.release()  # closes the connection: the answer was not read to its end
        self.record(failure)

    async def mock(self, content: str) -> None:
        self.outcome.first_at = utcnow()
        chunks = mock_stream_chunks(self.call.target.model_group, content, self.call.request_id)
        for chunk in chunks[:-1]:
            await self.send(sse.encode_event(chunk))
        await self.send(sse.rewrite_usage(sse.encode_event(chunks[-1]), self.outcome.on_usage, self.keep_usage) + b"data: [DONE]\n\n")
        self.record(None)

    def record(self, failure: tuple[int, str] | None) -> None:
        """Settle and record the call, once, with the last usage seen."""
        if self.recorded:
            return
        self.recorded = True
        outcome = self.outcome
        usage = outcome.usage
        if failure is not None:
            if usage is None:
                usage = estimated_usage(prompt_chars(self.call.body), outcome.chunks)
            self.relay.fail(self.call, failure[0], failure[1], usage, stream=True)
        elif usage is not None:
            self.relay.finish(self.call, usage, response_model=outcome.response_model, stream=True,
                              completion_start_time=outcome.first_at or utcnow())
        else:
            # No usage chunk: the upstream does not report usage when streaming (or it was unreadable).
            usage = estimated_usage(prompt_chars(self.call.body), outcome.chunks)
            self.relay.finish(self.call, usage, stream=True, completion_start_time=outcome.first_at,
                              metadata_extra={"usage_estimated": True, "client_disconnected": self.client_gone})


async def relay_stream(relay: CallHost, request: web.Request, call: Call, mock: str | None = None) -> web.StreamResponse:
    target = call.target
    keep_usage = call.inbound is not None or wire.client_wants_usage(call.body) or relay.settings.always_include_stream_usage
    upstream_response: Response | None = None
    t_up = time.perf_counter()
    upstream_s = 0.0
    if mock is None:
        if target.native is not None:
            await target.native.prepare()
        shape = wire if call.inbound is None else call.inbound  # the caller's API: OpenAI chat's, or another
        path, payload, header_lines = shape.upstream_request(target, call.call_type, call.body, stream=True)
        pool = relay.pools[target.origin]
        try:
            async with asyncio.timeout(call.timeout_s or relay.timeouts[target.model_id]):
                upstream_response = await pool.post(path, payload, header_lines)
                raw = await upstream_response.read() if upstream_response.status >= 400 else b""
        except TimeoutError as exc:
            if upstream_response is not None:
                upstream_response.release()
            relay.fail(call, 504, f"upstream {target.api_base} did not answer within the timeout", stream=True)
            raise UpstreamError(f"Request timed out: upstream {target.api_base} did not answer in time", 504, type="timeout") from exc
        except UpstreamConnectionError as exc:
            if upstream_response is not None:
                upstream_response.release()
            relay.fail(call, 502, f"upstream {target.api_base} unreachable: {exc}", stream=True)
            raise UpstreamError(f"upstream {target.api_base} unreachable: {exc}", 502, type="api_connection_error") from exc
        except BaseException:  # cancelled (shutdown): the caller settles the call; the connection is closed
            if upstream_response is not None:
                upstream_response.release()
            raise
        if upstream_response.status >= 400:
            error = wire.upstream_error(target, upstream_response.status, raw, upstream_response.headers)
            relay.fail(call, error.status, error.message, stream=True)
            raise error
        upstream_s = time.perf_counter() - t_up

    headers = relay.headers(call, None, call.caller.spend)
    headers["Content-Type"] = "text/event-stream"
    headers["Cache-Control"] = "no-cache"
    headers["x-litellm-overhead-duration-ms"] = f"{(time.perf_counter() - call.t0 - upstream_s) * 1000:.3f}"
    # Headers and the first bytes in one write when those bytes are already here (always for a
    # mock); otherwise the headers go now, so the client knows at once that the call started.
    at_hand = upstream_response is None or upstream_response.buffered
    response = (CoalescingStreamResponse if at_hand else web.StreamResponse)(headers=headers)
    pump = _Pump(relay, call, response, keep_usage, upstream_response)
    try:
        await response.prepare(request)
    except _CLIENT_GONE:
        pump.client_gone = True
    except BaseException:  # cancelled before the pump owns the upstream answer
        if upstream_response is not None:
            upstream_response.release()
        raise
    if mock is not None:
        await pump.mock(mock)
    else:
        assert upstream_response is not None
        await pump.pump(upstream_response)
    await pump.finish()
    return response


def _translate(translator: StreamTranslator, block: bytes, outcome: _Outcome, keep_usage: bool) -> bytes:
    """Anthropic events -> OpenAI chunks (with the usage chunk priced) and the final [DONE]."""
    out: list[bytes] = []
    for _name, data, _raw in sse.iter_events(block):
        if not data:
            continue
        event = sse.json_event(data)
        if event.get("type") == "error":
            raise UpstreamConnectionError(str((event.get("error") or {}).get("message", "stream error")))
        out.append(_encode_chunks(translator.feed(event), outcome, keep_usage))
        if event.get("type") == "message_stop":
            out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def _encode_chunks(chunks: list[dict[str, Any]], outcome: _Outcome, keep_usage: bool) -> bytes:
    """Translated OpenAI chunks as SSE events, the usage chunk priced (or dropped)."""
    out: list[bytes] = []
    for chunk in chunks:
        if "usage" in chunk:
            out.append(sse.rewrite_usage(sse.encode_event(chunk), outcome.on_usage, keep_usage))
        else:
            outcome.chunks += 1
            out.append(sse.encode_event(chunk))
    return b"".join(out)


class _NativeStage:
    """A native provider's stream (its decoder) as OpenAI SSE chunks, ended with [DONE]."""

    def __init__(self, decoder: StreamDecoder, outcome: _Outcome, keep_usage: bool) -> None:
        self.decoder, self.outcome, self.keep_usage = decoder, outcome, keep_usage

    def feed(self, data: bytes) -> bytes:
        return _encode_chunks(self.decoder.feed(data), self.outcome, self.keep_usage)

    def end(self) -> bytes:
        return _encode_chunks(self.decoder.close(), self.outcome, self.keep_usage) + b"data: [DONE]\n\n"
