"""OpenAI chat completions to and from Anthropic's Messages API. Pure: dicts in, dicts out.

Usage follows LiteLLM: prompt_tokens counts every input token, cached or not (input_tokens +
cache_read_input_tokens + cache_creation_input_tokens); the cache parts are reported beside it
(prompt_tokens_details.cached_tokens, cache_read_input_tokens, cache_creation_input_tokens), so the
pricer bills cached tokens at their own rates."""

from __future__ import annotations

import time
from typing import Any

import orjson

from services.proxy.errors import InvalidRequest
from services.proxy.providers.openai_content import content_parts, data_url, image_url

DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls", "pause_turn": "stop", "refusal": "content_filter"}
# OpenAI parameters with the same meaning under the same name in the Messages API.
_PASSTHROUGH = ("temperature", "top_p", "top_k", "stream", "thinking")


def _text_parts(content: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in content_parts(content):
        kind = part.get("type")
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": part.get("text", "")}
        elif kind == "image_url":
            url = image_url(part)
            inline = data_url(url)
            if inline is not None:
                block = {"type": "image", "source": {"type": "base64", "media_type": inline[0] or "image/png", "data": inline[1]}}
            else:
                block = {"type": "image", "source": {"type": "url", "url": url}}
        else:
            block = dict(part)  # already an Anthropic block (document, tool_result, ...)
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        parts.append(block)
    return parts


def _tool_use_blocks(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    blocks = []
    for call in tool_calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            parsed = {"arguments": arguments}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": parsed})
    return blocks


def request_to_anthropic(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """An OpenAI chat request (proxy-only fields already removed) as a Messages API request."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_parts(message.get("content")))
            continue
        if role == "tool":
            block = {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": _text_parts(message.get("content"))}
            if messages and messages[-1]["role"] == "user":
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
            continue
        content = _text_parts(message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            content += _tool_use_blocks(message["tool_calls"])
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"unsupported message role {role!r} for an Anthropic model", param="messages")
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(content)  # Anthropic wants alternating roles
        else:
            messages.append({"role": role, "content": content})

    out: dict[str, Any] = {
        "model": upstream_model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = system
    for name in _PASSTHROUGH:
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    if body.get("tools"):
        out["tools"] = [
            {"name": t["function"]["name"], "description": t["function"].get("description", ""),
             "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}}}
            for t in body["tools"] if t.get("type") == "function"
        ]
    choice = body.get("tool_choice")
    if choice == "required":
        out["tool_choice"] = {"type": "any"}
    elif choice in ("auto", "none"):
        out["tool_choice"] = {"type": choice}
    elif isinstance(choice, dict) and choice.get("function"):
        out["tool_choice"] = {"type": "tool", "name": choice["function"].get("name")}
    # Everything else the caller sent that Anthropic shares verbatim (unknown fields, e.g. x_fake).
    for name, value in body.items():
        if name not in out and name not in _OPENAI_ONLY:
            out[name] = value
    return out


_OPENAI_ONLY = frozenset({
    "messages", "model", "max_tokens", "max_completion_tokens", "stop", "user", "tools", "tool_choice",
    "stream_options", "n", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
    "response_format", "seed", "parallel_tool_calls", "service_tier", "store", "modalities", "audio", "prediction",
    "reasoning_effort", "web_search_options",
})


def openai_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    usage = usage or {}
    fresh = int(usage.get("input_tokens") or 0)
    cache_read = int(usage.get("cache_read_input_tokens") or 0)
    cache_creation = int(usage.get("cache_creation_input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    prompt = fresh + cache_read + cache_creation
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_creation,
    }


def response_from_anthropic(message: dict[str, Any]) -> dict[str, Any]:
    text: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            tool_calls.append({"id": block.get("id"), "type": "function",
                               "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not tool_calls else None}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [{"index": 0, "message": reply, "finish_reason": STOP_REASONS.get(message.get("stop_reason") or "", "stop")}],
        "usage": openai_usage(message.get("usage")),
    }


def error_from_anthropic(payload: Any) -> tuple[str, str | None]:
    """(message, type) from {"type": "error", "error": {"type": ..., "message": ...}}."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message", "")), payload["error"].get("type")
    return str(payload), None


class StreamTranslator:
    """Anthropic stream events in, OpenAI chat.completion.chunk dicts out (usage chunk last)."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self.tool_index: dict[int, int] = {}  # content block index -> tool call index
        self.finish_reason: str | None = None
        self.first = True

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id, self.model = message.get("id", ""), message.get("model", "")
            self.usage.update(message.get("usage") or {})
            self.first = False
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tool_index.setdefault(event.get("index", 0), len(self.tool_index))
                return [self._chunk({"tool_calls": [{"index": index, "id": block.get("id"), "type": "function",
                                                     "function": {"name": block.get("name"), "arguments": ""}}]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self.tool_index.get(event.get("index", 0), 0)
                return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": delta.get("partial_json", "")}}]})]
            return []
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            stop = (event.get("delta") or {}).get("stop_reason")
            self.finish_reason = STOP_REASONS.get(stop or "", "stop")
            return [self._chunk({}, self.finish_reason)]
        if kind == "message_stop":
            return [self.usage_chunk()]
        return []

    def usage_chunk(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": openai_usage(self.usage)}
