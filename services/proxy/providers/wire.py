"""The wire to each kind of upstream: request bytes out, OpenAI-shaped response and usage back.
Pure: the HTTP call itself is in relay.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.proxy.errors import UpstreamError
from services.proxy.providers import anthropic
from services.proxy.providers.openai_usage import usage_for_images, usage_from_openai
from services.proxy.routing.policy import retry_after_s
from services.proxy.routing.router import ANTHROPIC, CHAT, EMBEDDING, IMAGE, Target
from shared.events import TokenUsage

INCLUDE_USAGE = {"include_usage": True}


def upstream_request(target: Target, call_type: str, body: dict[str, Any], stream: bool) -> tuple[str, bytes, bytes]:
    """(path?query, body, header lines) of the upstream request. A native provider's adapter
    makes all three (a signature may cover path and body); every other wire has them ready."""
    native = target.native
    if native is None:
        payload = request_payload(target, call_type, body, stream)
        return target.paths[call_type], payload, target.header_block
    path, payload = native.request(call_type, body, stream)
    return path, payload, native.sign(target.header_block, path, payload)


def request_payload(target: Target, call_type: str, body: dict[str, Any], stream: bool) -> bytes:
    """The body to send upstream: the deployment's model name, usage asked for when streaming."""
    if target.wire == ANTHROPIC:
        if call_type != CHAT:
            raise UpstreamError(f"{target.model} (Anthropic) serves chat completions only", 400, type="invalid_request_error")
        return orjson.dumps(anthropic.request_to_anthropic(body, target.upstream_model))
    payload = {**body, "model": target.upstream_model}
    if stream:
        options = body.get("stream_options")
        if not (isinstance(options, dict) and options.get("include_usage")):
            payload["stream_options"] = {**options, **INCLUDE_USAGE} if isinstance(options, dict) else INCLUDE_USAGE
    return orjson.dumps(payload)


def client_wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def parse_response(target: Target, call_type: str, request: dict[str, Any], raw: bytes,
                   headers: Mapping[str, str] | None = None) -> tuple[bytes, TokenUsage, str | None]:
    """(bytes for the client, usage, the model the upstream named). OpenAI-shaped answers pass
    byte for byte; Anthropic's are translated. `headers` (lower-case): the answer's, for a
    provider that reports usage there."""
    parsed = answer_object(target, raw)
    if target.native is not None:
        try:
            parsed = target.native.response(call_type, request, parsed)
            if headers:
                parsed = target.native.with_header_usage(call_type, parsed, headers)
        except (AttributeError, TypeError, ValueError) as exc:  # an answer not in the provider's documented shape
            raise UpstreamError(f"upstream {target.api_base} answered in an unexpected shape: {type(exc).__name__}: {exc}", 502) from exc
        raw = orjson.dumps(parsed)
    elif target.wire == ANTHROPIC:
        parsed = anthropic.response_from_anthropic(parsed)
        raw = orjson.dumps(parsed)
    if call_type == IMAGE:
        usage = usage_for_images(request, parsed)
    else:
        usage = usage_from_openai(parsed.get("usage"))
        if call_type == EMBEDDING and usage.completion_tokens:
            usage = usage.model_copy(update={"completion_tokens": 0})
    model = parsed.get("model")
    return raw, usage, model if isinstance(model, str) else None


def answer_object(target: Target, raw: bytes) -> dict[str, Any]:
    """The upstream's answer as a JSON object; anything else is a 502."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"upstream {target.api_base} answered with invalid JSON", 502) from exc
    if not isinstance(parsed, dict):
        raise UpstreamError(f"upstream {target.api_base} answered with a JSON {type(parsed).__name__}, not an object", 502)
    return parsed


def upstream_error(target: Target, status: int, raw: bytes, headers: Mapping[str, str] | None = None) -> UpstreamError:
    """The upstream's error, its status kept, in OpenAI's error shape; with the answer's
    (lower-case) `headers`, the Retry-After it asks for."""
    message: str | None = None
    kind: str | None = None
    code: str | None = None
    try:
        payload = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        payload = None
    if target.native is not None and payload is not None:
        message, kind = target.native.error(payload)
    elif target.wire == ANTHROPIC and payload is not None:
        message, kind = anthropic.error_from_anthropic(payload)
    elif isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        message, kind = error.get("message"), error.get("type")
        code = str(error["code"]) if error.get("code") is not None else None
    elif isinstance(payload, dict) and isinstance(payload.get("error"), str):
        message = payload["error"]
    if not message:
        message = raw[:500].decode(errors="replace") or f"upstream answered {status}"
    error = UpstreamError(f"{target.provider} error from {target.api_base}: {message}", status, type=kind, code=code or str(status))
    if headers:
        error.retry_after_s = retry_after_s(headers)
    return error
