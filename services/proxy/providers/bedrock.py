"""AWS Bedrock (`bedrock/<model id>`, `bedrock/converse/<model id>`): OpenAI chat to and from the
Converse API (`POST /model/{modelId}/converse`) and ConverseStream (`/converse-stream`, framed as
application/vnd.amazon.eventstream), each request signed with SigV4 (sigv4.py) or, with an
api_key, a Bedrock API key as a bearer token.

Usage follows LiteLLM: prompt_tokens = inputTokens + cacheReadInputTokens + cacheWriteInputTokens;
the cache parts are reported beside it, so each is billed at its own rate."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from services.proxy.errors import ConfigurationError, InvalidRequest
from services.proxy.providers import cohere
from services.proxy.providers.eventstream import EventStreamDecoder
from services.proxy.providers.native import ChunkMaker, NativeWire, count, openai_usage_from_parts
from services.proxy.providers.openai_content import content_parts, data_url, image_url, tool_arguments, unsupported
from services.proxy.providers.sigv4 import Signer, credentials_of, region_of
from services.proxy.transport.http1 import UpstreamConnectionError

CHAT, EMBEDDING = "acompletion", "aembedding"
TITAN, COHERE = "titan", "cohere"
INPUT_TOKEN_COUNT_HEADER = "x-amzn-bedrock-input-token-count"
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_CACHE_POINT = {"cachePoint": {"type": "default"}}
_EFFORT_BUDGETS = {"low": 1024, "medium": 2048, "high": 4096}  # LiteLLM's reasoning_effort -> thinking budget


def usage_from_converse(usage: Any) -> dict[str, Any]:
    usage = usage if isinstance(usage, dict) else {}
    read, written = count(usage.get("cacheReadInputTokens")), count(usage.get("cacheWriteInputTokens"))
    return openai_usage_from_parts(count(usage.get("inputTokens")) + read + written, count(usage.get("outputTokens")),
                                   cached=read, cache_creation=written)


def _blocks(content: Any) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for part in content_parts(content):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"text": str(part.get("text", ""))})
        elif kind == "image_url":
            media, data = data_url(image_url(part)) or ("", "")
            if media not in _IMAGE_FORMATS:
                raise InvalidRequest("a Bedrock model takes images as data: URLs of PNG, JPEG, GIF or WebP", param="messages")
            blocks.append({"image": {"format": _IMAGE_FORMATS[media], "source": {"bytes": data}}})
        else:
            raise unsupported(kind, "Bedrock")
        if part.get("cache_control"):
            blocks.append(dict(_CACHE_POINT))
    return blocks


def request_to_converse(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """An OpenAI chat request (proxy-only fields already removed) as a Converse request."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)  # Converse wants alternating roles
        else:
            messages.append({"role": role, "content": blocks})

    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content")))
        elif role == "user":
            add("user", _blocks(message.get("content")))
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append({"toolUse": {"toolUseId": call.get("id"), "name": function.get("name"),
                                           "input": tool_arguments(function.get("arguments"))}})
            add("assistant", blocks)
        elif role == "tool":
            result = [b for b in _blocks(message.get("content")) if "text" in b] or [{"text": ""}]
            add("user", [{"toolResult": {"toolUseId": message.get("tool_call_id"), "content": result}}])
        else:
            raise InvalidRequest(f"unsupported message role {role!r} for a Bedrock model", param="messages")

    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    config: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    for field, name in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(field) is not None:
            config[name] = body[field]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if config:
        out["inferenceConfig"] = config
    extra: dict[str, Any] = {}
    if body.get("top_k") is not None:
        extra["top_k"] = body["top_k"]
    thinking, effort = body.get("thinking"), body.get("reasoning_effort")
    if isinstance(thinking, dict):
        extra["thinking"] = thinking
    elif effort in _EFFORT_BUDGETS:
        extra["thinking"] = {"type": "enabled", "budget_tokens": _EFFORT_BUDGETS[effort]}
    if extra:
        out["additionalModelRequestFields"] = extra
    tools = [t["function"] for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    if tools:
        specs = [{"toolSpec": {"name": f.get("name"), "description": f.get("description") or f.get("name"),
                               "inputSchema": {"json": f.get("parameters") or {"type": "object", "properties": {}}}}} for f in tools]
        out["toolConfig"] = {"tools": specs}
        choice = body.get("tool_choice")
        if choice == "required":
            out["toolConfig"]["toolChoice"] = {"any": {}}
        elif choice == "auto":
            out["toolConfig"]["toolChoice"] = {"auto": {}}
        elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            out["toolConfig"]["toolChoice"] = {"tool": {"name": choice["function"].get("name")}}
    return out


def response_from_converse(parsed: dict[str, Any], model: str) -> dict[str, Any]:
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in ((parsed.get("output") or {}).get("message") or {}).get("content") or []:
        if not isinstance(block, dict):
            continue
        if "text" in block:
            text.append(str(block["text"]))
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append({"id": use.get("toolUseId"), "type": "function",
                          "function": {"name": use.get("name"), "arguments": orjson.dumps(use.get("input") or {}).decode()}})
        elif isinstance(block.get("reasoningContent"), dict):
            reasoning.append(str((block["reasoningContent"].get("reasoningText") or {}).get("text", "")))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": ChunkMaker().created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": STOP_REASONS.get(parsed.get("stopReason") or "", "stop")}],
        "usage": usage_from_converse(parsed.get("usage")),
    }


class ConverseStream:
    """ConverseStream's event-stream messages in, OpenAI chunks out; the `metadata` event's usage
    becomes the usage chunk when the stream ends."""

    def __init__(self, model: str) -> None:
        self.frames = EventStreamDecoder()
        self.maker = ChunkMaker(f"chatcmpl-{uuid.uuid4().hex[:24]}", model)
        self.usage: dict[str, Any] | None = None
        self.tools: dict[int, int] = {}  # content block index -> tool call index
        self.failure: UpstreamConnectionError | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The chunks of the events before an exception event go out; the exception then breaks
        the stream (at the next feed or at close)."""
        if self.failure is not None:
            raise self.failure
        out: list[dict[str, Any]] = []
        for headers, payload in self.frames.feed(data):
            if headers.get(":message-type") != "event":
                kind = headers.get(":exception-type") or headers.get(":error-code") or "error"
                self.failure = UpstreamConnectionError(f"{kind}: {_message_of(payload)}")
                return out
            try:
                event = orjson.loads(payload) if payload else {}
            except orjson.JSONDecodeError as exc:
                raise UpstreamConnectionError(f"the stream carried an event that is not JSON: {exc}") from exc
            if isinstance(event, dict):
                out.extend(self._event(str(headers.get(":event-type")), event))
        return out

    def _event(self, kind: str, event: dict[str, Any]) -> list[dict[str, Any]]:
        chunk = self.maker.chunk
        if kind == "messageStart":
            return [chunk({"role": "assistant", "content": ""})]
        if kind == "contentBlockStart":
            use = (event.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                index = self.tools.setdefault(event.get("contentBlockIndex", 0), len(self.tools))
                return [chunk({"tool_calls": [{"index": index, "id": use.get("toolUseId"), "type": "function",
                                               "function": {"name": use.get("name"), "arguments": ""}}]})]
            return []
        if kind == "contentBlockDelta":
            delta = event.get("delta") or {}
            if "text" in delta:
                return [chunk({"content": str(delta["text"])})]
            if isinstance(delta.get("toolUse"), dict):
                index = self.tools.get(event.get("contentBlockIndex", 0), 0)
                return [chunk({"tool_calls": [{"index": index, "function": {"arguments": str(delta["toolUse"].get("input", ""))}}]})]
            if isinstance(delta.get("reasoningContent"), dict) and "text" in delta["reasoningContent"]:
                return [chunk({"reasoning_content": str(delta["reasoningContent"]["text"])})]
            return []
        if kind == "messageStop":
            return [chunk({}, STOP_REASONS.get(event.get("stopReason") or "", "stop"))]
        if kind == "metadata" and isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        return []

    def close(self) -> list[dict[str, Any]]:
        if self.failure is not None:
            raise self.failure
        if self.frames.pending:
            raise UpstreamConnectionError(f"the event stream ended inside a message ({self.frames.pending} bytes)")
        return [] if self.usage is None else [self.maker.usage_chunk(usage_from_converse(self.usage))]


def _message_of(payload: bytes) -> str:
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload[:300].decode(errors="replace")
    if isinstance(parsed, dict):
        return str(parsed.get("message") or parsed.get("Message") or parsed)
    return str(parsed)


def titan_embedding_request(body: dict[str, Any]) -> dict[str, Any]:
    """Titan Text Embeddings take one text per request (InvokeModel)."""
    given = body.get("input")
    texts = [given] if isinstance(given, str) else given
    if not isinstance(texts, list) or len(texts) != 1 or not isinstance(texts[0], str) or not texts[0]:
        raise InvalidRequest("a Titan embedding model embeds one text per request: send input as one non-empty string", param="input")
    out: dict[str, Any] = {"inputText": texts[0]}
    if body.get("dimensions") is not None:
        out["dimensions"] = body["dimensions"]
    return out


def titan_embedding_response(parsed: dict[str, Any], model: str) -> dict[str, Any]:
    tokens = count(parsed.get("inputTextTokenCount"))
    return {"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": parsed.get("embedding") or []}],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def embedding_family(model_id: str) -> str | None:
    """TITAN or COHERE for an embedding model id (a cross-region prefix such as `us.` allowed), else None."""
    for family, prefix in ((TITAN, "amazon.titan-embed-text"), (COHERE, "cohere.embed")):
        if model_id.startswith(prefix) or model_id.split(".", 1)[-1].startswith(prefix):
            return family
    return None


def cohere_embedding_request(body: dict[str, Any]) -> dict[str, Any]:
    """Cohere Embed on InvokeModel: Cohere's embed body without `model` (the URL names it); several texts at once."""
    request = cohere.embed_request(body, "")
    del request["model"]
    return request


class BedrockWire(NativeWire):
    provider = "bedrock"

    def __init__(self, upstream_model: str, endpoint: str, signer: Signer | None, api_key: str | None) -> None:
        self.model = upstream_model
        root = f"/model/{quote(upstream_model, safe='')}"
        self.endpoint = endpoint
        # Titan Text and Cohere Embed models embed through InvokeModel; everything else chats through Converse.
        self.embeds = embedding_family(upstream_model)
        self.call_types = frozenset({EMBEDDING} if self.embeds else {CHAT})
        urls = {EMBEDDING: f"{endpoint}{root}/invoke"} if self.embeds else {CHAT: f"{endpoint}{root}/converse"}
        super().__init__(endpoint, urls, {"Authorization": f"Bearer {api_key}"} if api_key else {})
        self.chat_path, self.stream_path, self.invoke_path = f"{root}/converse", f"{root}/converse-stream", f"{root}/invoke"
        self.signer = signer

    def request(self, call_type: str, body: dict[str, Any], stream: bool) -> tuple[str, bytes]:
        self.check(call_type)
        if call_type == EMBEDDING:
            request = titan_embedding_request(body) if self.embeds == TITAN else cohere_embedding_request(body)
            return self.invoke_path, orjson.dumps(request)
        return self.stream_path if stream else self.chat_path, orjson.dumps(request_to_converse(body, self.model))

    def sign(self, header_block: bytes, path: str, payload: bytes) -> bytes:
        if self.signer is None:
            return header_block
        return header_block + self.signer.headers(self.endpoint + path, payload)

    def response(self, call_type: str, body: dict[str, Any], parsed: dict[str, Any]) -> dict[str, Any]:
        if call_type == EMBEDDING and self.embeds == TITAN:
            return titan_embedding_response(parsed, self.model)
        if call_type == EMBEDDING:
            return cohere.embed_response(parsed, self.model, body.get("input"))
        return response_from_converse(parsed, self.model)

    def with_header_usage(self, call_type: str, answer: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        """Cohere Embed's body counts no tokens: InvokeModel reports them in X-Amzn-Bedrock-Input-Token-Count."""
        reported = headers.get(INPUT_TOKEN_COUNT_HEADER)
        if call_type == EMBEDDING and self.embeds == COHERE and reported is not None and reported.isascii() and reported.isdigit():
            tokens = int(reported)
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return answer

    def error(self, payload: Any) -> tuple[str | None, str | None]:
        """Bedrock's error body: {"message": "..."} (the type travels in the x-amzn-ErrorType header)."""
        if isinstance(payload, dict):
            message = payload.get("message") or payload.get("Message")
            return (str(message), None) if message else (None, None)
        return None, None

    def stream_decoder(self, body: dict[str, Any]) -> ConverseStream:
        return ConverseStream(self.model)


def bedrock_wire(name: str, params: Any, env: Mapping[str, str], where: str) -> BedrockWire:
    """`converse/<id>` and `<id>` both go to Converse; api_key (or AWS_BEARER_TOKEN_BEDROCK) is a
    Bedrock API key sent as a bearer token, otherwise requests are SigV4-signed."""
    model = name.removeprefix("converse/")
    if model.startswith("invoke/"):
        raise ConfigurationError(f"{where}: bedrock/invoke/ is not supported; use bedrock/converse/{model[7:]}")
    region = region_of(params, env)
    endpoint = ((params.model_extra or {}).get("aws_bedrock_runtime_endpoint") or params.api_base
                or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")
    api_key = params.api_key or env.get("AWS_BEARER_TOKEN_BEDROCK")
    signer = None if api_key else Signer(credentials_of(params, env, where), region)
    return BedrockWire(model, endpoint, signer, api_key)
