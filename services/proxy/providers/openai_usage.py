"""Token usage as the upstream reported it, normalised into shared.events.TokenUsage. Pure and
total: whatever an upstream sends (null, strings, booleans, negatives, NaN, infinities, numbers
past any real call, details that are not objects), the result is a valid TokenUsage and nothing
raises.

A count is a whole number in [0, MAX_TOKENS]. Negative, non-finite and non-numeric values count
as absent (0); a finite float is truncated; a count above MAX_TOKENS is clamped to MAX_TOKENS, so
a broken upstream's figure is never recorded as less than a plausible maximum and every cost
stays finite and inside Postgres' columns (docs/settlement.md)."""

from __future__ import annotations

import math
from typing import Any

from services.proxy.usage_log.record import token_usage
from shared.events import TokenUsage

EMPTY = TokenUsage()
MAX_TOKENS = 10**9  # no real call comes near: a million-token context, a thousand times over
_NO_DETAILS: dict[str, Any] = {}


def _int(value: Any) -> int:
    """A whole count in [0, MAX_TOKENS] from whatever the upstream sent."""
    kind = type(value)
    if kind is int:
        return 0 if value < 0 else value if value <= MAX_TOKENS else MAX_TOKENS
    if kind is float and math.isfinite(value):
        return 0 if value < 0 else int(value) if value <= MAX_TOKENS else MAX_TOKENS
    return 0  # None, bool, str, NaN, inf, containers


def usage_from_openai(usage: Any) -> TokenUsage:
    """OpenAI's usage object (and the cache fields LiteLLM / DeepSeek / Anthropic add beside it).

    Each count is `_int(value)`, written out for the usual values (a whole number in range, or
    absent) so that those cost no function call: this runs on every call."""
    if type(usage) is not dict:
        return EMPTY
    get = usage.get
    prompt_details = get("prompt_tokens_details")
    if type(prompt_details) is not dict:
        prompt_details = _NO_DETAILS
    completion_details = get("completion_tokens_details")
    if type(completion_details) is not dict:
        completion_details = _NO_DETAILS
    v = get("cache_read_input_tokens")
    cache_read = v if type(v) is int and 0 < v <= MAX_TOKENS else 0 if v is None else _int(v)
    if not cache_read:
        cache_read = _int(prompt_details.get("cached_tokens")) or _int(get("prompt_cache_hit_tokens"))
    v = get("prompt_tokens")
    prompt = v if type(v) is int and 0 < v <= MAX_TOKENS else 0 if v is None else _int(v)
    if not prompt and "input_tokens" in usage:  # Responses-API style names
        prompt = _int(get("input_tokens"))
    v = get("completion_tokens")
    completion = v if type(v) is int and 0 < v <= MAX_TOKENS else 0 if v is None else _int(v)
    if not completion:
        completion = _int(get("output_tokens"))
    v = get("cache_creation_input_tokens")
    cache_creation = v if type(v) is int and 0 < v <= MAX_TOKENS else 0 if v is None else _int(v)
    v = completion_details.get("reasoning_tokens")
    reasoning = v if type(v) is int and 0 < v <= MAX_TOKENS else 0 if v is None else _int(v)
    # Unvalidated on purpose (hot path): every count is a whole number in [0, MAX_TOKENS] by now.
    return token_usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_creation,
        reasoning_tokens=reasoning,
    )


def usage_for_images(request: dict[str, Any], response: dict[str, Any]) -> TokenUsage:
    data = response.get("data")
    count = len(data) if isinstance(data, list) else max(1, _int(request.get("n")))
    usage = response.get("usage")
    if type(usage) is not dict:
        usage = _NO_DETAILS
    return TokenUsage(
        prompt_tokens=_int(usage.get("input_tokens")),
        completion_tokens=_int(usage.get("output_tokens")),
        image_count=min(count, MAX_TOKENS),
        image_size=str(request.get("size") or "1024x1024"),
        image_quality=str(request.get("quality") or "standard"),
    )


def estimated_usage(prompt_chars: int, completion_chunks: int) -> TokenUsage:
    """When a stream ends without a usage chunk: ~4 characters per prompt token, a token per chunk."""
    return TokenUsage(prompt_tokens=(prompt_chars + 3) // 4, completion_tokens=completion_chunks)
