"""`/v1/responses` (OpenAI's Responses API, what OpenAI's agents speak) passed to an
OpenAI-compatible deployment, as a call of the relay: authenticated, budgeted, rate-limited,
attributed and priced like a chat call.

The request goes upstream as sent (model replaced, the proxy's own fields removed) to
`<api_base>/responses`; the answer and the stream pass through, except the final event
(`response.completed`, `.incomplete` or `.failed`), whose `response.usage` gains `"cost"`. Budgets
and limits read the request's chat form: its `input` as one user message, `max_output_tokens` as
`max_tokens`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.proxy.calls.attribution import PROXY_ONLY_FIELDS
from services.proxy.errors import InvalidRequest, UpstreamError
from services.proxy.providers import sse, wire
from services.proxy.providers.native import count
from services.proxy.providers.openai_usage import usage_from_openai
from services.proxy.routing.router import AZURE, CHAT, OPENAI, Target
from services.proxy.transport.http1 import UpstreamConnectionError
from shared.events import TokenUsage

FINAL_EVENTS = (b"response.completed", b"response.incomplete", b"response.failed")


def chat_usage(usage: Any) -> dict[str, Any]:
    """The Responses API's usage in chat terms: input (cached included) as prompt, output
    (reasoning included) as completion, the details beside."""
    usage = usage if isinstance(usage, dict) else {}
    inputs = usage.get("input_tokens_details") if isinstance(usage.get("input_tokens_details"), dict) else {}
    outputs = usage.get("output_tokens_details") if isinstance(usage.get("output_tokens_details"), dict) else {}
    return {"prompt_tokens": count(usage.get("input_tokens")), "completion_tokens": count(usage.get("output_tokens")),
            "prompt_tokens_details": {"cached_tokens": count(inputs.get("cached_tokens"))},
            "completion_tokens_details": {"reasoning_tokens": count(outputs.get("reasoning_tokens"))}}


class ResponsesCall:
    """One /v1/responses call: its request, and how it goes to and comes from the deployment."""

    def __init__(self, body: Any, headers: Mapping[str, str]) -> None:
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        given = body.get("input")
        if not isinstance(given, (str, list)) or not given:
            raise InvalidRequest("input is required: a string or a list of input items", param="input")
        self.native = body
        text = given if isinstance(given, str) else orjson.dumps(given).decode()
        self.openai_body = {k: body[k] for k in ("model", "user", "metadata", "stream", "tags", "litellm_metadata", "mock_response")
                            if k in body}
        self.openai_body["messages"] = [{"role": "user", "content": text}]
        if body.get("max_output_tokens") is not None:
            self.openai_body["max_tokens"] = body["max_output_tokens"]
        self.openai_body.pop("mock_response", None)

    def upstream_request(self, target: Target, call_type: str, body: dict[str, Any], stream: bool) -> tuple[str, bytes, bytes]:
        if target.wire not in (OPENAI, AZURE) or target.native is not None:
            raise UpstreamError(f"{target.model} ({target.provider}) does not serve the Responses API; "
                                "/v1/responses goes to OpenAI-compatible deployments", 400, type="invalid_request_error")
        native = {k: v for k, v in self.native.items() if k not in PROXY_ONLY_FIELDS}
        metadata = self.native.get("metadata")
        if isinstance(metadata, dict):  # the Responses API's own metadata: string values only
            kept = {k: v for k, v in metadata.items() if isinstance(v, str)}
            if kept:
                native["metadata"] = kept
        native["model"] = target.upstream_model
        return _responses_path(target), orjson.dumps(native), target.header_block

    def parse_response(self, target: Target, call_type: str, request: dict[str, Any], raw: bytes) -> tuple[bytes, TokenUsage, str | None]:
        parsed = wire.answer_object(target, raw)
        model = parsed.get("model")
        return raw, usage_from_openai(chat_usage(parsed.get("usage"))), model if isinstance(model, str) else None

    def stream_stage(self, target: Target, price: Any) -> ResponsesPassThrough:
        return ResponsesPassThrough(price)


def _responses_path(target: Target) -> str:
    """`<api_base>/responses` (Azure: `/openai/responses` on the resource, its api-version kept)."""
    path, _, query = target.paths[CHAT].partition("?")
    if target.wire == AZURE:
        return "/openai/responses" + (f"?{query}" if query else "")
    return path.removesuffix("/chat/completions") + "/responses" + (f"?{query}" if query else "")


class ResponsesPassThrough:
    """The upstream's Responses stream, byte for byte except the final event, which gets the cost."""

    def __init__(self, price: Any) -> None:
        self.price = price
        self.buffer = b""
        self.error: str | None = None

    def feed(self, data: bytes) -> bytes:
        block, self.buffer = sse.split_complete(self.buffer + data)
        out: list[bytes] = []
        for name, payload, raw in sse.iter_events(block):
            if name == b"error":
                self.error = str(sse.json_event(payload).get("message", "stream error"))
            if name not in FINAL_EVENTS:
                out.append(raw)
                continue
            event = sse.json_event(payload)
            response = event.get("response") if isinstance(event.get("response"), dict) else {}
            usage = response.get("usage")
            if isinstance(usage, dict):
                cost = self.price({"model": response.get("model"), "usage": chat_usage(usage)})
                if cost is not None:
                    response["usage"] = {**usage, "cost": sse.money_fragment(cost)}
                    event["response"] = response
            out.append(b"event: " + name + b"\ndata: " + orjson.dumps(event) + b"\n\n")
        return b"".join(out)

    def end(self) -> bytes:
        if self.error is not None:
            raise UpstreamConnectionError(self.error)
        return self.buffer
