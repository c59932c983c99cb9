"""`/v1/messages` (Anthropic's Messages API, what the Anthropic SDK and Claude Code speak) as a
call of the relay: authenticated, budgeted, rate-limited, attributed and priced like a chat call.

The relay works on the OpenAI chat form of the request (`chat_request`): budgets, limits and
attribution read it. What goes upstream depends on the deployment: an Anthropic deployment (or
Claude on Vertex AI) gets the caller's Messages request itself (only the model replaced) and its answer and stream
pass through, with the cost added to the stream's message_delta usage; any other deployment gets
the chat request, and its answer or chunks come back as a Message or Anthropic stream events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from services.proxy.errors import InvalidRequest, UpstreamError
from services.proxy.auth.keys import KEY_CATCH_UP_S, authenticate_with_catch_up
from services.proxy.calls.streaming import prompt_chars
from services.proxy.calls.unbilled import unbilled_request
from services.proxy.providers import anthropic, sse, wire
from services.proxy.providers.messages_api import MessagesEvents, chat_request, message_from_chat
from services.proxy.providers.openai_usage import estimated_usage, usage_from_openai
from services.proxy.routing.router import ANTHROPIC, CHAT, Target
from services.proxy.transport.http1 import UpstreamConnectionError
from shared.events import TokenUsage

# The caller's Messages request goes to an Anthropic deployment as it came, minus what the proxy
# itself consumes (LiteLLM's metadata keys; Anthropic's metadata keeps only user_id).
_PROXY_ONLY = frozenset({"litellm_metadata", "mock_response", "tags", "litellm_session_id", "num_retries", "fallbacks",
                         "api_key", "api_base", "base_model"})


def auth_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """The Anthropic SDK sends its key as `x-api-key`; a bearer token is accepted too."""
    key = headers.get("x-api-key")
    if key and not headers.get("Authorization"):
        return {"Authorization": f"Bearer {key}"}
    return headers


class MessagesCall:
    """One /v1/messages call: its Messages request, and how it goes to and comes from the deployment."""

    def __init__(self, body: Any, headers: Mapping[str, str], owner: Any = None) -> None:
        """`owner` is for stored responses (/v1/responses); messages are not stored."""
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        if not isinstance(body.get("messages"), list) or not body["messages"] or not all(isinstance(m, dict) for m in body["messages"]):
            raise InvalidRequest("messages: Field required (a non-empty list of message objects)", param="messages")
        max_tokens = body.get("max_tokens")
        if type(max_tokens) is not int or max_tokens < 1:
            raise InvalidRequest("max_tokens: Field required (a positive integer)", param="max_tokens")
        self.native = body
        self.beta = headers.get("anthropic-beta")
        self.openai_body = chat_request(body)

    # -- the plain call (the relay calls these in place of wire.upstream_request / parse_response) --

    def upstream_request(self, target: Target, call_type: str, body: dict[str, Any], stream: bool) -> tuple[str, bytes, bytes]:
        if not speaks_messages(target):
            return wire.upstream_request(target, CHAT, body, stream)
        native = {k: v for k, v in self.native.items() if k not in _PROXY_ONLY}
        metadata = native.pop("metadata", None)
        if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
            native["metadata"] = {"user_id": metadata["user_id"]}
        native["model"] = target.upstream_model
        headers = target.header_block
        if self.beta and "\r" not in self.beta and "\n" not in self.beta:
            headers += f"anthropic-beta: {self.beta}\r\n".encode("latin-1", "replace")
        if target.native is not None:  # Claude on Vertex AI: its own path and token
            path, payload = target.native.messages_request(native, stream)
            return path, payload, target.native.sign(headers, path, payload)
        return target.paths[CHAT], orjson.dumps(native), headers

    def parse_response(self, target: Target, call_type: str, request: dict[str, Any], raw: bytes) -> tuple[bytes, TokenUsage, str | None]:
        if not speaks_messages(target):
            data, usage, model = wire.parse_response(target, CHAT, request, raw)
            try:
                message = message_from_chat(orjson.loads(data), model or target.model_group)
            except (AttributeError, TypeError, ValueError, IndexError) as exc:  # not a chat completion's shape
                raise UpstreamError(f"upstream {target.api_base} answered in an unexpected shape: {type(exc).__name__}: {exc}", 502) from exc
            return orjson.dumps(message), usage, model
        parsed = wire.answer_object(target, raw)
        model = parsed.get("model")
        return raw, usage_from_openai(anthropic.openai_usage(parsed.get("usage"))), model if isinstance(model, str) else None

    # -- the stream ---------------------------------------------------------------------------

    def stream_stage(self, target: Target, price: Any) -> Any:
        """What turns the upstream's stream bytes into the Anthropic events the client reads."""
        if speaks_messages(target):
            return AnthropicPassThrough(price)
        decoder = target.native.stream_decoder(self.openai_body) if target.native is not None else OpenAIChunks()
        return TranslatedEvents(decoder, MessagesEvents(str(self.native.get("model")), price))


def speaks_messages(target: Target) -> bool:
    """The deployment takes the Messages API itself: Anthropic's, or Claude on Vertex AI."""
    return target.wire == ANTHROPIC or (target.native is not None and target.native.speaks_messages)


class OpenAIChunks:
    """An OpenAI-compatible upstream's SSE stream as chunk dicts."""

    def __init__(self) -> None:
        self.events = sse.JsonEvents()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return [chunk for _name, chunk in self.events.feed(data)]

    def close(self) -> list[dict[str, Any]]:
        return []


class TranslatedEvents:
    """Any deployment's chunks (decoded from its own stream) as Anthropic stream events."""

    def __init__(self, decoder: Any, events: MessagesEvents) -> None:
        self.decoder, self.events = decoder, events

    def feed(self, data: bytes) -> bytes:
        return b"".join(self.events.feed(chunk) for chunk in self.decoder.feed(data))

    def end(self) -> bytes:
        return b"".join(self.events.feed(chunk) for chunk in self.decoder.close()) + self.events.end()


class AnthropicPassThrough:
    """An Anthropic deployment's stream, passed on byte for byte except message_delta, which gets
    the call's cost in its usage. Usage: message_start's input counts, message_delta's output."""

    def __init__(self, price: Any) -> None:
        self.price = price
        self.buffer = b""
        self.usage: dict[str, Any] = {}
        self.model: str | None = None
        self.error: str | None = None

    def feed(self, data: bytes) -> bytes:
        block, self.buffer = sse.split_complete(self.buffer + data)
        out: list[bytes] = []
        for name, payload, raw in sse.iter_events(block):
            if name not in (b"message_start", b"message_delta", b"error"):
                out.append(raw)
                continue
            event = sse.json_event(payload)
            if name == b"error":
                self.error = str((event.get("error") or {}).get("message", "stream error"))
                out.append(raw)
            elif name == b"message_start":
                message = event.get("message") or {}
                self.usage.update(message.get("usage") or {})
                self.model = message.get("model") if isinstance(message.get("model"), str) else None
                out.append(raw)
            else:
                self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
                cost = self.price({"model": self.model, "usage": anthropic.openai_usage(self.usage)})
                if cost is not None:
                    event["usage"] = {**(event.get("usage") or {}), "cost": sse.money_fragment(cost)}
                out.append(b"event: message_delta\ndata: " + orjson.dumps(event) + b"\n\n")
        return b"".join(out)

    def end(self) -> bytes:
        if self.error is not None:
            raise UpstreamConnectionError(self.error)
        return self.buffer


async def count_tokens(relay: Any, request: web.Request) -> web.Response:
    """`/v1/messages/count_tokens`: an Anthropic deployment counts (its answer passed on); for any
    other (Claude on Vertex included), an estimate of four characters a token (as for a stream
    without usage). Not a billed call."""
    caller = await authenticate_with_catch_up(relay.auth, auth_headers(request.headers), relay.key_sync, KEY_CATCH_UP_S)
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise InvalidRequest("model: Field required", param="model")
    target = relay.router.pick(body["model"], caller.allows_model)
    relay.auth.check_model(caller, body["model"])
    if target.wire != ANTHROPIC:
        chat = chat_request(body)
        return web.json_response({"input_tokens": estimated_usage(prompt_chars(chat), 0).prompt_tokens})
    payload = orjson.dumps({**body, "model": target.upstream_model})
    raw = await unbilled_request(relay, target, target.paths[CHAT] + "/count_tokens", payload)
    return web.Response(body=raw, content_type="application/json")
