"""Reading an OpenAI chat message's parts, for the translators to other providers' shapes. Pure.

A message's content is a string or a list of parts; a hostile request may send anything else,
which is a 400 before any upstream call."""

from __future__ import annotations

from typing import Any

import orjson

from services.proxy.errors import InvalidRequest


def content_parts(content: Any) -> list[dict[str, Any]]:
    """The content as a list of part objects: a string is one text part ("" and None: none)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("message content must be a string or a list of parts", param="messages")
    for part in content:
        if not isinstance(part, dict):
            raise InvalidRequest("message content parts must be objects", param="messages")
    return content


def image_url(part: dict[str, Any]) -> str:
    """The URL of an `image_url` part (an object with `url`, or the URL itself)."""
    image = part.get("image_url")
    return str(image.get("url", "") if isinstance(image, dict) else image or "")


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:` URL; None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, _, data = url.partition(",")
    return header[5:].split(";")[0], data


def tool_arguments(raw: Any) -> Any:
    """A tool call's `arguments` (JSON text) as the object other providers take."""
    if not isinstance(raw, str):
        return raw or {}
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"tool call arguments are not JSON: {exc}", param="messages") from exc


def unsupported(kind: Any, provider: str) -> InvalidRequest:
    return InvalidRequest(f"message content part type {kind!r} is not supported for a {provider} model", param="messages")
