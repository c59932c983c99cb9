"""Token usage as the upstream reported it, normalised into shared.events.TokenUsage. Pure."""

from __future__ import annotations

from typing import Any

from services.proxy.record import token_usage
from shared.events import TokenUsage

EMPTY = TokenUsage()


def _int(value: Any) -> int:
    """A whole, non-negative count from whatever the upstream sent (null, float, bool: 0 or int)."""
    if type(value) is int:
        return value if value > 0 else 0
    return int(value) if isinstance(value, float) and value > 0 else 0


def usage_from_openai(usage: Any) -> TokenUsage:
    """OpenAI's usage object (and the cache fields LiteLLM / DeepSeek / Anthropic add beside it).

    Each count is `_int(value)`, written out for the usual values (a whole number, or absent) so
    that those cost no function call: this runs on every call."""
    if not isinstance(usage, dict):
        return EMPTY
    get = usage.get
    prompt_details = get("prompt_tokens_details") or {}
    completion_details = get("completion_tokens_details") or {}
    v = get("cache_read_input_tokens")
    cache_read = v if type(v) is int and v > 0 else 0 if v is None else _int(v)
    if not cache_read:
        cache_read = _int(prompt_details.get("cached_tokens")) or _int(get("prompt_cache_hit_tokens"))
    v = get("prompt_tokens")
    prompt = v if type(v) is int and v > 0 else 0 if v is None else _int(v)
    if not prompt and "input_tokens" in usage:  # Responses-API style names
        prompt = _int(get("input_tokens"))
    v = get("completion_tokens")
    completion = v if type(v) is int and v > 0 else 0 if v is None else _int(v)
    if not completion:
        completion = _int(get("output_tokens"))
    v = get("cache_creation_input_tokens")
    cache_creation = v if type(v) is int and v > 0 else 0 if v is None else _int(v)
    v = completion_details.get("reasoning_tokens")
    reasoning = v if type(v) is int and v > 0 else 0 if v is None else _int(v)
    # Unvalidated on purpose (hot path): every count is a whole number >= 0 by now.
    return token_usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_creation,
        reasoning_tokens=reasoning,
    )


def usage_for_images(request: dict[str, Any], response: dict[str, Any]) -> TokenUsage:
    data = response.get("data")
    count = len(data) if isinstance(data, list) else int(request.get("n") or 1)
    usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
    return TokenUsage(
        prompt_tokens=_int(usage.get("input_tokens")),
        completion_tokens=_int(usage.get("output_tokens")),
        image_count=count,
        image_size=str(request.get("size") or "1024x1024"),
        image_quality=str(request.get("quality") or "standard"),
    )


def estimated_usage(prompt_chars: int, completion_chunks: int) -> TokenUsage:
    """When a stream ends without a usage chunk: ~4 characters per prompt token, a token per chunk."""
    return TokenUsage(prompt_tokens=(prompt_chars + 3) // 4, completion_tokens=completion_chunks)
