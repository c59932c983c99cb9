"""`/v1/responses` (OpenAI's Responses API, what OpenAI's agents speak) passed to an
OpenAI-compatible deployment, as a call of the relay: authenticated, budgeted, rate-limited,
attributed and priced like a chat call.

The request goes upstream as sent (model replaced, the proxy's own fields removed) to
`<api_base>/responses`; the answer and the stream pass through, except the final event
(`response.completed`, `.incomplete` or `.failed`), whose `response.usage` gains `"cost"`. Budgets
and limits read the request's chat form: its `input` as one user message, `max_output_tokens` as
`max_tokens`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from urllib.parse import urlencode

import orjson
from aiohttp import web

from services.proxy.auth.keys import KEY_CATCH_UP_S, authenticate_with_catch_up
from services.proxy.calls.attribution import PROXY_ONLY_FIELDS
from services.proxy.calls.response_ids import MAX_ID_CHARS, Owner, StoredResponse, decode
from services.proxy.calls.unbilled import unbilled_request
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

    def __init__(self, body: Any, headers: Mapping[str, str], owner: Owner | None = None) -> None:
        if not isinstance(body, dict):
            raise InvalidRequest("the request body must be a JSON object")
        given = body.get("input")
        if not isinstance(given, (str, list)) or not given:
            raise InvalidRequest("input is required: a string or a list of input items", param="input")
        self.native = body
        self.owner = owner or Owner("", "")
        # A conversation continues on the deployment that stored its previous response.
        self.previous: StoredResponse | None = None
        previous = body.get("previous_response_id")
        if previous is not None:
            self.previous = stored_response(previous, self.owner, "previous_response_id")
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
        if self.previous is not None:
            native["previous_response_id"] = self.previous.upstream_id
        return responses_path(target), orjson.dumps(native), target.header_block

    def parse_response(self, target: Target, call_type: str, request: dict[str, Any], raw: bytes) -> tuple[bytes, TokenUsage, str | None]:
        parsed = wire.answer_object(target, raw)
        model = parsed.get("model")
        usage = usage_from_openai(chat_usage(parsed.get("usage")))
        return orjson.dumps(with_managed_ids(parsed, target, self.owner)), usage, model if isinstance(model, str) else None

    def stream_stage(self, target: Target, price: Any) -> ResponsesPassThrough:
        return ResponsesPassThrough(price, lambda upstream_id: self.owner.managed_id(target.provider, target.model_id, upstream_id))


async def retrieve(relay: Any, request: web.Request) -> web.Response:
    """`GET /v1/responses/{response_id}`: the stored response, from the deployment that created it,
    for the key that created it (any other key: 404, as if it did not exist). Not billed."""
    caller = await authenticate_with_catch_up(relay.auth, request.headers, relay.key_sync, KEY_CATCH_UP_S)
    owner = Owner(relay.settings.master_key or "", caller.api_key_hash)
    stored = stored_response(request.match_info["response_id"], owner, "response_id")
    target = relay.router.deployment(stored.model_id)
    if target is None or target.wire not in (OPENAI, AZURE) or target.native is not None:
        raise UpstreamError(f"Response with id '{request.match_info['response_id'][:MAX_ID_CHARS]}' not found.", 404,
                            type="invalid_request_error")
    relay.auth.check_model(caller, target.model_group)
    path = responses_path(target, stored.upstream_id)
    include = [("include[]", v) for v in request.query.getall("include[]", []) + request.query.getall("include", [])]
    if include:
        path += ("&" if "?" in path else "?") + urlencode(include)
    raw = await unbilled_request(relay, target, path, method="GET")
    answer = with_managed_ids(wire.answer_object(target, raw), target, owner)
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def stored_response(response_id: Any, owner: Owner, param: str) -> StoredResponse:
    """The stored response a managed id names, if the caller's key created it; else OpenAI's 404."""
    stored = decode(response_id) if isinstance(response_id, str) else None
    if stored is None or not owner.owns(stored):
        raise UpstreamError(f"Response with id '{str(response_id)[:MAX_ID_CHARS]}' not found.", 404, type="invalid_request_error",
                            code=None if param == "response_id" else "previous_response_not_found")
    return stored


def with_managed_ids(response: dict[str, Any], target: Target, owner: Owner) -> dict[str, Any]:
    """The upstream's response with its id, and previous_response_id, as the caller's managed ids."""
    for field in ("id", "previous_response_id"):
        upstream_id = response.get(field)
        if isinstance(upstream_id, str) and upstream_id:
            response[field] = owner.managed_id(target.provider, target.model_id, upstream_id)
    return response


def responses_path(target: Target, response_id: str | None = None) -> str:
    """`<api_base>/responses[/<id>]` (Azure: `/openai/responses` on the resource, its api-version kept)."""
    path, _, query = target.paths[CHAT].partition("?")
    tail = "/responses" if response_id is None else f"/responses/{response_id}"
    if target.wire == AZURE:
        return "/openai" + tail + (f"?{query}" if query else "")
    return path.removesuffix("/chat/completions") + tail + (f"?{query}" if query else "")


class ResponsesPassThrough:
    """The upstream's Responses stream, byte for byte except the final event, which gets the cost."""

    def __init__(self, price: Any, managed_id: Callable[[str], str]) -> None:
        self.price = price
        self.managed_id = managed_id
        self.ids: list[tuple[bytes, bytes]] = []  # (upstream id, managed id) as JSON strings, once response.created named it
        self.buffer = b""
        self.error: str | None = None

    def feed(self, data: bytes) -> bytes:
        block, self.buffer = sse.split_complete(self.buffer + data)
        out: list[bytes] = []
        for name, payload, raw in sse.iter_events(block):
            if name == b"error":
                self.error = str(sse.json_event(payload).get("message", "stream error"))
            if not self.ids and name == b"response.created":
                self.learn_id(sse.json_event(payload))
            if name not in FINAL_EVENTS:
                out.append(self.managed(raw))
                continue
            event = sse.json_event(payload)
            response = event.get("response") if isinstance(event.get("response"), dict) else {}
            usage = response.get("usage")
            if isinstance(usage, dict):
                cost = self.price({"model": response.get("model"), "usage": chat_usage(usage)})
                if cost is not None:
                    response["usage"] = {**usage, "cost": sse.money_fragment(cost)}
                    event["response"] = response
            out.append(self.managed(b"event: " + name + b"\ndata: " + orjson.dumps(event) + b"\n\n"))
        return b"".join(out)

    def learn_id(self, event: dict[str, Any]) -> None:
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        for field in ("id", "previous_response_id"):
            upstream_id = response.get(field)
            if isinstance(upstream_id, str) and upstream_id:
                self.ids.append((orjson.dumps(upstream_id), orjson.dumps(self.managed_id(upstream_id))))

    def managed(self, raw: bytes) -> bytes:
        """An event with the response's id as the caller's managed id."""
        for upstream, managed in self.ids:
            raw = raw.replace(upstream, managed)
        return raw

    def end(self) -> bytes:
        if self.error is not None:
            raise UpstreamConnectionError(self.error)
        return self.buffer
