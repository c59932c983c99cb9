"""Anthropic's Messages API as an inbound shape (`/v1/messages`): a Messages request as an OpenAI
chat request, and an OpenAI answer or chunk stream as a Message or Anthropic stream events, for a
deployment that does not speak the Messages API itself. Pure.

Usage goes back as Anthropic reports it: input_tokens counts only the tokens neither read from nor
written to the cache, beside cache_read_input_tokens and cache_creation_input_tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from services.proxy.errors import InvalidRequest
from services.proxy.providers.sse import money_fragment

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# Messages API parameters passed on under the same name (every chat translator reads them).
_SAME = ("temperature", "top_p", "top_k", "stream", "thinking", "metadata")


def _openai_parts(content: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(content parts, tool calls, tool messages) of one Messages API message's content."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}], [], []
    if not isinstance(content, list):
        raise InvalidRequest("messages[].content must be a string or a list of content blocks", param="messages")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for block in content:
        if not isinstance(block, dict):
            raise InvalidRequest("content blocks must be objects", param="messages")
        kind = block.get("type")
        if kind == "text":
            part: dict[str, Any] = {"type": "text", "text": str(block.get("text", ""))}
        elif kind == "image":
            source = block.get("source") if isinstance(block.get("source"), dict) else {}
            url = source.get("url") if source.get("type") == "url" else f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
            part = {"type": "image_url", "image_url": {"url": url}}
        elif kind == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
            continue
        elif kind == "tool_result":
            inner = block.get("content")
            text = inner if isinstance(inner, str) else "".join(
                str(b.get("text", "")) for b in inner or [] if isinstance(b, dict) and b.get("type") == "text")
            results.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
            continue
        elif kind in ("thinking", "redacted_thinking"):
            continue  # a model's earlier thoughts: no OpenAI equivalent to send them as
        else:
            raise InvalidRequest(f"content block type {kind!r} is not supported for this model", param="messages")
        if block.get("cache_control"):
            part["cache_control"] = block["cache_control"]
        parts.append(part)
    return parts, calls, results


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages API request as an OpenAI chat request (for deployments other than Anthropic's)."""
    messages: list[dict[str, Any]] = []
    system, sent = body.get("system"), body.get("messages")
    if not isinstance(sent, list) or not all(isinstance(message, dict) for message in sent):
        raise InvalidRequest("messages: Input should be a list of message objects", param="messages")
    if system:
        messages.append({"role": "system", "content": system if isinstance(system, str) else _openai_parts(system)[0]})
    for message in sent:
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"messages[].role must be user or assistant, not {role!r}", param="messages")
        parts, calls, results = _openai_parts(message.get("content"))
        messages.extend(results)  # tool results answer the assistant turn before this one
        if role == "assistant":
            reply: dict[str, Any] = {"role": "assistant", "content": "".join(p.get("text", "") for p in parts) or None}
            if calls:
                reply["tool_calls"] = calls
            messages.append(reply)
        elif isinstance(message.get("content"), str):
            messages.append({"role": "user", "content": message["content"]})
        elif parts:
            messages.append({"role": "user", "content": parts})
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": body.get("max_tokens")}
    for name in _SAME:
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    user = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if isinstance(user, str) and user:
        out["user"] = user
    if body.get("tools"):
        out["tools"] = [{"type": "function", "function": {"name": t.get("name"), "description": t.get("description", ""),
                                                          "parameters": t.get("input_schema") or {"type": "object"}}}
                        for t in body["tools"] if isinstance(t, dict) and t.get("name")]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif choice.get("type") in _TOOL_CHOICES:
            out["tool_choice"] = _TOOL_CHOICES[choice["type"]]
    return out


def messages_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """An OpenAI usage object (LiteLLM's cache fields beside it) in Anthropic's terms."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}
    read = int(usage.get("cache_read_input_tokens") or details.get("cached_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    return {"input_tokens": max(0, int(usage.get("prompt_tokens") or 0) - read - written),
            "output_tokens": int(usage.get("completion_tokens") or 0),
            "cache_creation_input_tokens": written, "cache_read_input_tokens": read}


def message_from_chat(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat completion as a Messages API Message."""
    choice = (completion.get("choices") or [{}])[0]
    reply = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if reply.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": reply["reasoning_content"], "signature": ""})
    if reply.get("content"):
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = {"arguments": function.get("arguments")}
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments})
    return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"), "stop_sequence": None,
            "usage": messages_usage(completion.get("usage"))}


def event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


class MessagesEvents:
    """OpenAI chat.completion.chunk dicts in, Anthropic stream events out: message_start, one
    content block per text run or tool call, message_delta with the usage (and `cost`, from
    `price`) and message_stop when the stream ends."""

    def __init__(self, model: str, price: Callable[[dict[str, Any]], Decimal | None]) -> None:
        self.model, self.price = model, price
        self.started = False
        self.block: tuple[str, int | None] | None = None  # ("text" | "tool_use", tool index) of the open block
        self.index = -1
        self.stop_reason = "end_turn"
        self.usage: dict[str, Any] | None = None  # the usage chunk
        self.cost: Decimal | None = None

    def _open(self, kind: str, tool: int | None, start: dict[str, Any]) -> bytes:
        out = self._close_block()
        self.index += 1
        self.block = (kind, tool)
        return out + event("content_block_start", {"index": self.index, "content_block": start})

    def _close_block(self) -> bytes:
        if self.block is None:
            return b""
        self.block = None
        return event("content_block_stop", {"index": self.index})

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = b""
        if not self.started:
            self.started = True
            out += event("message_start", {"message": {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                                                       "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                                                       "usage": {"input_tokens": 0, "output_tokens": 0}}})
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk
            self.cost = self.price(chunk)  # priced as it arrives: a stream cut short still has its usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if self.block is None or self.block[0] != "text":
                    out += self._open("text", None, {"type": "text", "text": ""})
                out += event("content_block_delta", {"index": self.index, "delta": {"type": "text_delta", "text": delta["content"]}})
            for call in delta.get("tool_calls") or []:
                tool = call.get("index", 0)
                function = call.get("function") or {}
                if self.block != ("tool_use", tool):
                    out += self._open("tool_use", tool, {"type": "tool_use", "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                                                         "name": function.get("name") or "", "input": {}})
                if function.get("arguments"):
                    out += event("content_block_delta", {"index": self.index,
                                                         "delta": {"type": "input_json_delta", "partial_json": function["arguments"]}})
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def end(self) -> bytes:
        """The closing events, once the upstream's stream is over (its usage chunk, if any, seen)."""
        out = self._close_block()
        usage = messages_usage(self.usage["usage"]) if self.usage is not None else {"output_tokens": 0}
        if self.cost is not None:
            usage["cost"] = money_fragment(self.cost)
        return out + event("message_delta", {"delta": {"stop_reason": self.stop_reason, "stop_sequence": None}, "usage": usage}) \
            + event("message_stop", {})
