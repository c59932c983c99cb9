"""Cohere's v2 API (`cohere/<model>`, `cohere_chat/<model>`): chat (`POST /v2/chat`, streamed as
server-sent events) and embeddings (`POST /v2/embed`). Pure apart from ids.

v2 chat takes OpenAI's message shapes; parameters are renamed as LiteLLM renames them (top_p -> p,
stop -> stop_sequences, n -> num_generations). Usage as LiteLLM reads it: `usage.tokens`
(input_tokens, output_tokens) for chat, `meta.billed_units.input_tokens` for embeddings."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from services.proxy.errors import InvalidRequest
from services.proxy.providers import sse
from services.proxy.providers.native import (
    ChunkMaker, NativeWire, count, estimated_prompt_tokens, openai_usage_from_parts, url_path,
)
from services.proxy.transport.http1 import UpstreamConnectionError

COHERE_BASE = "https://api.cohere.com"
CHAT, EMBEDDING = "acompletion", "aembedding"
FINISH_REASONS = {"COMPLETE": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length", "TOOL_CALL": "tool_calls", "ERROR": "stop"}
_RENAMED = {"top_p": "p", "stop": "stop_sequences", "n": "num_generations", "max_completion_tokens": "max_tokens"}
_SAME = ("temperature", "max_tokens", "seed", "frequency_penalty", "presence_penalty", "tools", "stream", "k")


def usage_from_cohere(usage: Any) -> dict[str, Any]:
    tokens = usage.get("tokens") if isinstance(usage, dict) and isinstance(usage.get("tokens"), dict) else {}
    return openai_usage_from_parts(count(tokens.get("input_tokens")), count(tokens.get("output_tokens")))


def chat_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "messages": body.get("messages")}
    for name in _SAME:
        if body.get(name) is not None:
            out[name] = body[name]
    for name, renamed in _RENAMED.items():
        if body.get(name) is not None:
            out[renamed] = [body[name]] if name == "stop" and isinstance(body[name], str) else body[name]
    return out


def chat_response(parsed: dict[str, Any], model: str) -> dict[str, Any]:
    message = parsed.get("message") if isinstance(parsed.get("message"), dict) else {}
    text = "".join(str(c.get("text", "")) for c in message.get("content") or [] if isinstance(c, dict))
    reply: dict[str, Any] = {"role": "assistant", "content": text}
    if message.get("tool_calls"):
        reply["tool_calls"], reply["content"] = message["tool_calls"], text or None
    return {"id": parsed.get("id") or f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
            "created": ChunkMaker().created, "model": model,
            "choices": [{"index": 0, "message": reply, "finish_reason": FINISH_REASONS.get(str(parsed.get("finish_reason")), "stop")}],
            "usage": usage_from_cohere(parsed.get("usage"))}


def embed_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    given = body.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("a Cohere embedding model takes input as a string or a list of strings", param="input")
    out: dict[str, Any] = {"model": model, "texts": texts, "input_type": body.get("input_type") or "search_document",
                           "embedding_types": ["float"]}
    if body.get("dimensions") is not None:
        out["output_dimension"] = body["dimensions"]
    return out


def embed_response(parsed: dict[str, Any], model: str, texts: Any = None) -> dict[str, Any]:
    """Tokens from `meta.billed_units.input_tokens`; without it (Cohere on Bedrock reports none),
    estimated from `texts`, as LiteLLM counts them itself."""
    embeddings = parsed.get("embeddings")
    vectors = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
    billed = ((parsed.get("meta") or {}).get("billed_units") or {}) if isinstance(parsed.get("meta"), dict) else {}
    reported = billed.get("input_tokens") if isinstance(billed, dict) else None
    tokens = count(reported) if reported is not None or texts is None else estimated_prompt_tokens(texts)
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors or [])],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


class CohereStream:
    """v2 chat stream events (message-start, content-delta, tool-call-*, message-end) as OpenAI chunks."""

    def __init__(self, model: str) -> None:
        self.maker = ChunkMaker(f"chatcmpl-{uuid.uuid4().hex[:24]}", model)
        self.events = sse.JsonEvents()
        self.usage: Any = None
        self.tools = 0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return [chunk for _name, event in self.events.feed(data) for chunk in self._event(event)]

    def _event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
        message = delta.get("message") if isinstance(delta.get("message"), dict) else {}
        if kind == "message-start":
            self.maker.id = str(event.get("id") or self.maker.id)
            return [self.maker.chunk({"role": "assistant", "content": ""})]
        if kind == "content-delta":
            content = message.get("content") if isinstance(message.get("content"), dict) else {}
            return [self.maker.chunk({"content": str(content.get("text", ""))})]
        if kind == "tool-call-start" and isinstance(message.get("tool_calls"), dict):
            call = message["tool_calls"]
            self.tools += 1
            function = call.get("function") or {}
            return [self.maker.chunk({"tool_calls": [{"index": self.tools - 1, "id": call.get("id"), "type": "function",
                                                      "function": {"name": function.get("name"), "arguments": function.get("arguments", "")}}]})]
        if kind == "tool-call-delta" and isinstance(message.get("tool_calls"), dict):
            arguments = (message["tool_calls"].get("function") or {}).get("arguments", "")
            return [self.maker.chunk({"tool_calls": [{"index": max(self.tools - 1, 0), "function": {"arguments": arguments}}]})]
        if kind == "message-end":
            self.usage = delta.get("usage")
            return [self.maker.chunk({}, FINISH_REASONS.get(str(delta.get("finish_reason")), "stop"))]
        if kind == "error":
            raise UpstreamConnectionError(str(event.get("message", "stream error")))
        return []

    def close(self) -> list[dict[str, Any]]:
        return [] if self.usage is None else [self.maker.usage_chunk(usage_from_cohere(self.usage))]


class CohereWire(NativeWire):
    provider = "cohere"
    call_types = frozenset({CHAT, EMBEDDING})

    def __init__(self, model: str, api_base: str | None, api_key: str) -> None:
        base = (api_base or COHERE_BASE).rstrip("/").removesuffix("/v2/chat").removesuffix("/v2").removesuffix("/v1")
        urls = {CHAT: f"{base}/v2/chat", EMBEDDING: f"{base}/v2/embed"}
        super().__init__(base, urls, {"Authorization": f"Bearer {api_key}"} if api_key else {})
        self.model = model
        self.paths = {ct: url_path(url) for ct, url in urls.items()}

    def request(self, call_type: str, body: dict[str, Any], stream: bool) -> tuple[str, bytes]:
        self.check(call_type)
        if call_type == EMBEDDING:
            return self.paths[EMBEDDING], orjson.dumps(embed_request(body, self.model))
        return self.paths[CHAT], orjson.dumps(chat_request(body, self.model))

    def response(self, call_type: str, body: dict[str, Any], parsed: dict[str, Any]) -> dict[str, Any]:
        if call_type == EMBEDDING:
            return embed_response(parsed, self.model)
        return chat_response(parsed, self.model)

    def error(self, payload: Any) -> tuple[str | None, str | None]:
        """Cohere's error body: {"message": "..."} (older answers: {"error": "..."})."""
        if isinstance(payload, dict):
            message = payload.get("message") or payload.get("error")
            return (str(message), None) if isinstance(message, str) else (None, None)
        return None, None

    def stream_decoder(self, body: dict[str, Any]) -> CohereStream:
        return CohereStream(self.model)
