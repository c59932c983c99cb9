"""Vertex AI (`vertex_ai/<model>`): Gemini models through the publisher `google` (the same
generateContent API as Google AI Studio, gemini.py) and Claude models through the publisher
`anthropic` (`:rawPredict` / `:streamRawPredict`, the Messages API without `model`, with
`anthropic_version: vertex-2023-10-16`). Requests carry a service account's OAuth token
(google_auth.py); usage is mapped as for Gemini and for Anthropic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from services.proxy.errors import ConfigurationError, InvalidRequest
from services.proxy.providers import anthropic, sse
from services.proxy.providers.gemini import CHAT, EMBEDDING, GeminiWire, google_error
from services.proxy.providers.google_auth import AccessTokens, service_account_info
from services.proxy.providers.native import NativeWire, count, url_path
from services.proxy.transport.http1 import UpstreamConnectionError

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"
DEFAULT_LOCATION = "us-central1"


def _model_root(base: str, project: str, location: str, publisher: str, model: str) -> str:
    return f"{base}/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{quote(model, safe='-._~@')}"


class VertexGeminiWire(GeminiWire):
    provider = "vertex_ai"
    call_types = frozenset({CHAT})

    def __init__(self, model: str, base: str, project: str, location: str, tokens: AccessTokens) -> None:
        super().__init__(model, None, "")
        root = _model_root(base, project, location, "google", model)
        self.api_base, self.urls, self.tokens = base, {CHAT: f"{root}:generateContent"}, tokens
        self.paths = {CHAT: url_path(self.urls[CHAT])}
        self.stream_url = f"{root}:streamGenerateContent?alt=sse"
        self.stream_path = url_path(self.stream_url)

    async def prepare(self) -> None:
        await self.tokens.ready()

    def sign(self, header_block: bytes, path: str, payload: bytes) -> bytes:
        return header_block + self.tokens.header()


class VertexEmbeddingWire(NativeWire):
    """Vertex AI text embeddings (`text-embedding-*`, `text-multilingual-embedding-*`,
    `gemini-embedding-*`, `textembedding-gecko*`) through `:predict`: one instance per text, the
    usage from each prediction's `statistics.token_count`, as LiteLLM reads it."""

    provider = "vertex_ai"
    call_types = frozenset({EMBEDDING})

    def __init__(self, model: str, base: str, project: str, location: str, tokens: AccessTokens) -> None:
        url = _model_root(base, project, location, "google", model) + ":predict"
        super().__init__(base, {EMBEDDING: url}, {})
        self.model, self.tokens, self.path = model, tokens, url_path(url)

    async def prepare(self) -> None:
        await self.tokens.ready()

    def sign(self, header_block: bytes, path: str, payload: bytes) -> bytes:
        return header_block + self.tokens.header()

    def request(self, call_type: str, body: dict[str, Any], stream: bool) -> tuple[str, bytes]:
        self.check(call_type)
        given = body.get("input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("a Vertex AI embedding model takes input as a string or a list of strings", param="input")
        instance: dict[str, Any] = {}
        if body.get("task_type") is not None:
            instance["task_type"] = body["task_type"]
        request: dict[str, Any] = {"instances": [{**instance, "content": t} for t in texts]}
        if body.get("dimensions") is not None:
            request["parameters"] = {"outputDimensionality": body["dimensions"]}
        return self.path, orjson.dumps(request)

    def response(self, call_type: str, body: dict[str, Any], parsed: dict[str, Any]) -> dict[str, Any]:
        predictions = [p for p in parsed.get("predictions") or [] if isinstance(p, dict)]
        embeddings = [p.get("embeddings") if isinstance(p.get("embeddings"), dict) else {} for p in predictions]
        tokens = sum(count((e.get("statistics") or {}).get("token_count")) for e in embeddings if isinstance(e.get("statistics"), dict))
        return {"object": "list", "model": self.model,
                "data": [{"object": "embedding", "index": i, "embedding": e.get("values") or []} for i, e in enumerate(embeddings)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    def error(self, payload: Any) -> tuple[str | None, str | None]:
        return google_error(payload)


class AnthropicEvents:
    """Anthropic's SSE stream (as Vertex relays it) decoded into OpenAI chunks."""

    def __init__(self) -> None:
        self.translator = anthropic.StreamTranslator()
        self.events = sse.JsonEvents()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for _name, event in self.events.feed(data):
            if event.get("type") == "error":
                raise UpstreamConnectionError(str((event.get("error") or {}).get("message", "stream error")))
            chunks.extend(self.translator.feed(event))
        return chunks

    def close(self) -> list[dict[str, Any]]:
        return []  # the usage chunk came with message_stop


class VertexAnthropicWire(NativeWire):
    provider = "vertex_ai"
    call_types = frozenset({CHAT})
    speaks_messages = True

    def __init__(self, model: str, base: str, project: str, location: str, tokens: AccessTokens) -> None:
        root = _model_root(base, project, location, "anthropic", model)
        super().__init__(base, {CHAT: f"{root}:rawPredict"}, {})
        self.model, self.tokens = model, tokens
        self.chat_path, self.stream_path = url_path(f"{root}:rawPredict"), url_path(f"{root}:streamRawPredict")

    async def prepare(self) -> None:
        await self.tokens.ready()

    def request(self, call_type: str, body: dict[str, Any], stream: bool) -> tuple[str, bytes]:
        self.check(call_type)
        return self.messages_request(anthropic.request_to_anthropic(body, self.model), stream)

    def messages_request(self, body: dict[str, Any], stream: bool) -> tuple[str, bytes]:
        message = {k: v for k, v in body.items() if k != "model"}  # the URL names the model
        message["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        return self.stream_path if stream else self.chat_path, orjson.dumps(message)

    def sign(self, header_block: bytes, path: str, payload: bytes) -> bytes:
        return header_block + self.tokens.header()

    def response(self, call_type: str, body: dict[str, Any], parsed: dict[str, Any]) -> dict[str, Any]:
        return anthropic.response_from_anthropic(parsed)

    def error(self, payload: Any) -> tuple[str | None, str | None]:
        """Anthropic's error shape, or Google's (`{"error": {"code", "message", "status"}}`) from Vertex itself."""
        if isinstance(payload, list) and payload and isinstance(payload[0], dict):
            payload = payload[0]
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict) and "status" in payload["error"]:
            return str(payload["error"].get("message", "")), payload["error"].get("status")
        return anthropic.error_from_anthropic(payload)

    def stream_decoder(self, body: dict[str, Any]) -> AnthropicEvents:
        return AnthropicEvents()


def vertex_wire(name: str, params: Any, env: Mapping[str, str], where: str) -> NativeWire:
    extra = params.model_extra or {}
    tokens = AccessTokens(service_account_info(extra.get("vertex_credentials") or env.get("VERTEXAI_CREDENTIALS"), env, where), where)
    project = extra.get("vertex_project") or env.get("VERTEXAI_PROJECT") or tokens.project_id
    if not project:
        raise ConfigurationError(f"{where}: Vertex AI needs vertex_project (or VERTEXAI_PROJECT, or a project_id in the credentials)")
    location = extra.get("vertex_location") or env.get("VERTEXAI_LOCATION") or DEFAULT_LOCATION
    host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
    base = (params.api_base or f"https://{host}").rstrip("/")
    wire = (VertexAnthropicWire if name.startswith("claude")
            else VertexEmbeddingWire if "embedding" in name or name.startswith("textembedding")
            else VertexGeminiWire)
    return wire(name, base, str(project), str(location), tokens)
