"""Google AI Studio (`gemini/<model>`): OpenAI chat and embeddings to and from the Gemini API's
generateContent, streamGenerateContent (`alt=sse`) and batchEmbedContents. Pure apart from ids.

Usage follows LiteLLM: prompt_tokens = promptTokenCount (which already includes
cachedContentTokenCount, reported beside as cached tokens); completion_tokens =
candidatesTokenCount + thoughtsTokenCount, the thoughts reported as reasoning_tokens."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import orjson

from services.proxy.errors import InvalidRequest
from services.proxy.providers import sse
from services.proxy.providers.native import (
    ChunkMaker, NativeWire, count, estimated_prompt_tokens, openai_usage_from_parts, url_path,
)
from services.proxy.providers.openai_content import content_parts, data_url, image_url, tool_arguments, unsupported
from services.proxy.transport.http1 import UpstreamConnectionError

GEMINI_BASE = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
CHAT, EMBEDDING = "acompletion", "aembedding"
FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "LANGUAGE": "content_filter", "MALFORMED_FUNCTION_CALL": "stop", "OTHER": "stop",
}
# LiteLLM's reasoning_effort -> thinkingBudget.
THINKING_BUDGETS = {"minimal": 128, "low": 1024, "medium": 2048, "high": 4096, "disable": 0, "none": 0}
_GENERATION_FIELDS = {
    "temperature": "temperature", "top_p": "topP", "top_k": "topK", "n": "candidateCount", "seed": "seed",
    "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty", "logprobs": "responseLogprobs",
    "top_logprobs": "logprobs",
}
_TOOL_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}


def usage_from_gemini(metadata: Any) -> dict[str, Any]:
    metadata = metadata if isinstance(metadata, dict) else {}
    thoughts = count(metadata.get("thoughtsTokenCount"))
    return openai_usage_from_parts(count(metadata.get("promptTokenCount")),
                                   count(metadata.get("candidatesTokenCount")) + thoughts,
                                   cached=count(metadata.get("cachedContentTokenCount")), reasoning=thoughts)


def _parts(content: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in content_parts(content):
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": str(part.get("text", ""))})
        elif kind == "image_url":
            url = image_url(part)
            inline = data_url(url)
            if inline is not None:
                parts.append({"inlineData": {"mimeType": inline[0] or "image/png", "data": inline[1]}})
            else:
                image = part.get("image_url")
                mime = (image.get("format") if isinstance(image, dict) else None) or "image/jpeg"
                parts.append({"fileData": {"mimeType": mime, "fileUri": url}})
        else:
            raise unsupported(kind, "Gemini")
    return parts


def _contents(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system parts, contents) with roles user/model alternating as Gemini requires."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    tool_names: dict[str, str] = {}  # tool call id -> function name, for the function responses

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content")))
        elif role == "user":
            add("user", _parts(message.get("content")))
        elif role == "assistant":
            parts = _parts(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {} if isinstance(call, dict) else {}
                tool_names[str(call.get("id"))] = str(function.get("name", ""))
                parts.append({"functionCall": {"name": function.get("name"), "args": tool_arguments(function.get("arguments"))}})
            add("model", parts)
        elif role == "tool":
            content = message.get("content")
            text = content if isinstance(content, str) else "".join(p.get("text", "") for p in _parts(content) if "text" in p)
            name = tool_names.get(str(message.get("tool_call_id")), message.get("name") or "")
            add("user", [{"functionResponse": {"name": name, "response": {"content": text}}}])
        else:
            raise InvalidRequest(f"unsupported message role {role!r} for a Gemini model", param="messages")
    return system, contents


def request_to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request (proxy-only fields already removed) as a generateContent request."""
    system, contents = _contents(body.get("messages") or [])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config: dict[str, Any] = {name: body[field] for field, name in _GENERATION_FIELDS.items() if body.get(field) is not None}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    thinking = body.get("thinking")
    effort = body.get("reasoning_effort")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        config["thinkingConfig"] = {"thinkingBudget": thinking.get("budget_tokens"), "includeThoughts": True}
    elif isinstance(effort, str) and effort in THINKING_BUDGETS:
        budget = THINKING_BUDGETS[effort]
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": budget > 0}
    if config:
        out["generationConfig"] = config
    tools = [t["function"] for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    if tools:
        out["tools"] = [{"functionDeclarations": [
            {k: v for k, v in (("name", f.get("name")), ("description", f.get("description")), ("parameters", f.get("parameters"))) if v}
            for f in tools]}]
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice in _TOOL_MODES:
        out["toolConfig"] = {"functionCallingConfig": {"mode": _TOOL_MODES[choice]}}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out["toolConfig"] = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice["function"].get("name")]}}
    return out


def _message(candidate: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(OpenAI message or delta, whether it calls tools) from a candidate's parts."""
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if not isinstance(part, dict):
            continue
        if "functionCall" in part:
            call = part["functionCall"] or {}
            calls.append({"index": len(calls), "id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                          "function": {"name": call.get("name"), "arguments": orjson.dumps(call.get("args") or {}).decode()}})
        elif part.get("thought") is True:
            thoughts.append(str(part.get("text", "")))
        elif "text" in part:
            text.append(str(part["text"]))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return message, bool(calls)


def _finish(candidate: dict[str, Any], calls: bool) -> str | None:
    reason = candidate.get("finishReason")
    if not reason:
        return None
    return "tool_calls" if calls and reason == "STOP" else FINISH_REASONS.get(reason, "stop")


def response_from_gemini(parsed: dict[str, Any], model: str) -> dict[str, Any]:
    choices = []
    for position, candidate in enumerate(parsed.get("candidates") or []):
        if not isinstance(candidate, dict):
            continue
        message, calls = _message(candidate)
        for call in message.get("tool_calls") or []:
            call.pop("index")
        choices.append({"index": candidate.get("index", position), "message": message,
                        "finish_reason": _finish(candidate, calls) or "stop"})
    return {
        "id": parsed.get("responseId") or f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": ChunkMaker().created,
        "model": parsed.get("modelVersion") or model,
        "choices": choices,
        "usage": usage_from_gemini(parsed.get("usageMetadata")),
    }


def embedding_request(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise InvalidRequest("a Gemini embedding model takes input as a string or a list of strings", param="input")
    request: dict[str, Any] = {"model": f"models/{upstream_model}"}
    if body.get("dimensions") is not None:
        request["outputDimensionality"] = body["dimensions"]
    if body.get("task_type") is not None:
        request["taskType"] = body["task_type"]
    return {"requests": [{**request, "content": {"parts": [{"text": t}]}} for t in texts]}


def embedding_response(body: dict[str, Any], parsed: dict[str, Any], model: str) -> dict[str, Any]:
    """Gemini reports no token count for embeddings: prompt tokens are then estimated at four
    characters a token (documented in docs/providers.md), as for a stream without usage."""
    vectors = [e.get("values") or [] for e in parsed.get("embeddings") or [] if isinstance(e, dict)]
    metadata = parsed.get("usageMetadata")
    if isinstance(metadata, dict) and "promptTokenCount" in metadata:
        prompt = count(metadata.get("promptTokenCount"))
    else:
        prompt = estimated_prompt_tokens(body.get("input"))
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}


class GeminiStream:
    """streamGenerateContent?alt=sse events in, OpenAI chunks out. Every event repeats the usage
    so far; the last one counts, sent as the usage chunk when the stream ends."""

    def __init__(self, model: str) -> None:
        self.maker = ChunkMaker(f"chatcmpl-{uuid.uuid4().hex[:24]}", model)
        self.events = sse.JsonEvents()
        self.metadata: dict[str, Any] | None = None
        self.started = False
        self.tool_calls = 0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return [chunk for _name, event in self.events.feed(data) for chunk in self._event(event)]

    def _event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if isinstance(event.get("error"), dict):
            raise UpstreamConnectionError(str(event["error"].get("message", "stream error")))
        if isinstance(event.get("usageMetadata"), dict):
            self.metadata = event["usageMetadata"]
        if event.get("responseId"):
            self.maker.id = event["responseId"]
        if event.get("modelVersion"):
            self.maker.model = event["modelVersion"]
        out = []
        for position, candidate in enumerate(event.get("candidates") or []):
            if not isinstance(candidate, dict):
                continue
            delta, calls = _message(candidate)
            for call in delta.get("tool_calls") or []:
                call["index"] = self.tool_calls
                self.tool_calls += 1
            if not self.started:
                self.started = True
            else:
                delta.pop("role")
            if delta.get("content") is None:
                delta.pop("content")
            out.append(self.maker.chunk(delta, _finish(candidate, calls or self.tool_calls > 0), candidate.get("index", position)))
        return out

    def close(self) -> list[dict[str, Any]]:
        if self.metadata is None:
            return []  # no usage seen: the relay estimates it
        return [self.maker.usage_chunk(usage_from_gemini(self.metadata))]


def google_error(payload: Any) -> tuple[str | None, str | None]:
    """{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT"}} (Google's shape)."""
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        payload = payload[0]  # streamGenerateContent without alt=sse answers errors in an array
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        return str(error.get("message", "")), error.get("status")
    return None, None


class GeminiWire(NativeWire):
    provider = "gemini"
    call_types = frozenset({CHAT, EMBEDDING})

    def __init__(self, upstream_model: str, api_base: str | None, api_key: str) -> None:
        base = (api_base or GEMINI_BASE).rstrip("/")
        version = API_VERSION
        for known in ("v1beta", "v1alpha", "v1"):
            if base.endswith("/" + known):
                base, version = base[: -len(known) - 1], known
        self.model = upstream_model
        root = f"{base}/{version}/models/{quote(upstream_model, safe='-._~')}"
        urls = {CHAT: f"{root}:generateContent", EMBEDDING: f"{root}:batchEmbedContents"}
        super().__init__(base, urls, {"x-goog-api-key": api_key} if api_key else {})
        self.stream_url = f"{root}:streamGenerateContent?alt=sse"
        self.paths = {CHAT: url_path(urls[CHAT]), EMBEDDING: url_path(urls[EMBEDDING])}
        self.stream_path = url_path(self.stream_url)

    def request(self, call_type: str, body: dict[str, Any], stream: bool) -> tuple[str, bytes]:
        self.check(call_type)
        if call_type == EMBEDDING:
            return self.paths[EMBEDDING], orjson.dumps(embedding_request(body, self.model))
        return self.stream_path if stream else self.paths[CHAT], orjson.dumps(request_to_gemini(body))

    def response(self, call_type: str, body: dict[str, Any], parsed: dict[str, Any]) -> dict[str, Any]:
        if call_type == EMBEDDING:
            return embedding_response(body, parsed, self.model)
        return response_from_gemini(parsed, self.model)

    def error(self, payload: Any) -> tuple[str | None, str | None]:
        return google_error(payload)

    def stream_decoder(self, body: dict[str, Any]) -> GeminiStream:
        return GeminiStream(self.model)

