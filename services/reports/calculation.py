"""POST /spend/calculate's pure part: turn {model, messages} or {completion_response} into the
usage event the shared pricing function prices. The config maps a public model name to its
deployment (provider model, base_model, custom prices), exactly as the proxy does."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from shared.config import ProxyConfig
from shared.errors import BadRequest
from shared.events import TokenUsage, UsageEvent


def estimate_prompt_tokens(messages: list[Any]) -> int:
    """An estimate before the call (no tokenizer here): about four characters per token plus
    OpenAI's per-message framing (3 tokens a message, 3 to prime the reply)."""
    tokens = 3
    for message in messages:
        if not isinstance(message, dict):
            raise BadRequest("messages must be a list of objects with role and content", param="messages")
        tokens += 3
        for value in message.values():
            text = value if isinstance(value, str) else _text_of(value)
            tokens += math.ceil(len(text) / 4)
    return tokens


def _text_of(value: Any) -> str:
    if isinstance(value, list):  # content parts: [{"type": "text", "text": "..."}]
        return " ".join(part.get("text", "") for part in value if isinstance(part, dict) and isinstance(part.get("text"), str))
    return "" if value is None else str(value)


def _count(usage: dict[str, Any], name: str, *, nested: tuple[str, str] | None = None) -> int:
    value: Any = usage.get(name, 0)
    if nested is not None:
        details = usage.get(nested[0]) or {}
        value = details.get(nested[1], 0) if isinstance(details, dict) else 0
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or value != int(value):
        raise BadRequest(f"usage.{name if nested is None else '.'.join(nested)} must be a whole number of tokens", param="usage")
    return int(value)


def usage_event(body: dict[str, Any], config: ProxyConfig) -> UsageEvent:
    now = datetime.now(timezone.utc)
    common: dict[str, Any] = {"request_id": "spend-calculate", "call_type": "acompletion", "start_time": now, "end_time": now,
                              "api_key_hash": ""}
    model = body.get("model")
    response = body.get("completion_response")
    if model is not None:
        if not isinstance(model, str) or not model:
            raise BadRequest("model must be a model name", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise BadRequest("Bad Request - messages must be provided if 'model' is provided", param="messages")
        usage = TokenUsage(prompt_tokens=estimate_prompt_tokens(messages))
        return UsageEvent(**common, **_deployment_fields(model, config), usage=usage)
    if response is not None:
        if not isinstance(response, dict):
            raise BadRequest("completion_response must be an object", param="completion_response")
        usage_raw = response.get("usage")
        name = response.get("model")
        if not isinstance(name, str) or not name:
            raise BadRequest("completion_response.model is missing", param="completion_response")
        if not isinstance(usage_raw, dict):
            raise BadRequest("completion_response.usage is missing", param="completion_response")
        usage = TokenUsage(
            prompt_tokens=_count(usage_raw, "prompt_tokens"),
            completion_tokens=_count(usage_raw, "completion_tokens"),
            cache_read_input_tokens=_count(usage_raw, "prompt_tokens", nested=("prompt_tokens_details", "cached_tokens")),
            reasoning_tokens=_count(usage_raw, "completion_tokens", nested=("completion_tokens_details", "reasoning_tokens")),
        )
        fields = _deployment_fields(name, config)
        fields["response_model"] = name
        return UsageEvent(**common, **fields, usage=usage)
    raise BadRequest("Bad Request - Either 'model' or 'completion_response' must be provided")


def _deployment_fields(model: str, config: ProxyConfig) -> dict[str, Any]:
    for deployment in config.model_list:
        if deployment.model_name == model:
            params = deployment.litellm_params
            provider = params.custom_llm_provider or (params.model.split("/", 1)[0] if "/" in params.model else None)
            return {"model_group": model, "model": params.model, "base_model": deployment.base_model,
                    "custom_prices": deployment.custom_prices(), "custom_llm_provider": provider}
    return {"model_group": model, "model": model}
