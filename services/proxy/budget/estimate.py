"""An upper bound on what a call can cost, before it is made. Pure: no I/O.

The reservation held for a call in flight must not be smaller than its real cost, or concurrent
calls could pass a budget together. So every part of the estimate is an upper bound:

- prompt tokens <= UTF-8 bytes of the text sent (a BPE token covers at least one byte), plus 4 per
  message and 3 for the reply's priming, plus the bytes of any tools / functions / response_format;
  a non-text part (an image) counts as IMAGE_PART_TOKENS;
- completion tokens <= max_completion_tokens / max_tokens, else the model's max_output_tokens from
  the catalog, else DEFAULT_MAX_OUTPUT; times `n`;
- rates: the highest the catalog has for the model group (the tier above the largest threshold,
  cache creation if dearer than input, reasoning if dearer than output), taken over every
  deployment of the group, computed once with shared.pricing.price, the function that prices the
  call afterwards."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from shared.events import TokenUsage
from shared.pricing import CUSTOM, CallParts, Catalog, price, resolve_entry

ZERO = Decimal(0)
IMAGE_PART_TOKENS = 2_000  # an image in a prompt: LiteLLM's high-detail tile count bound
DEFAULT_MAX_OUTPUT = 4_096
_BIG = 2_000_000  # prompt size above every catalog tier threshold
_EXTRA_FIELDS = ("tools", "functions", "response_format", "tool_choice")


@dataclass(frozen=True, slots=True)
class Rates:
    """The highest per-token rates of a model group, and its output cap."""

    input: Decimal = ZERO
    output: Decimal = ZERO
    max_output: int = DEFAULT_MAX_OUTPUT
    model: str = ""  # one deployment's model, to price image calls


def group_rates(catalog: Catalog, targets: Iterable[Any]) -> dict[str, Rates]:
    """model_group -> its Rates, the maximum over its deployments."""
    rates: dict[str, Rates] = {}
    for target in targets:
        mine = deployment_rates(catalog, target)
        have = rates.get(target.model_group)
        if have is not None:
            mine = Rates(max(have.input, mine.input), max(have.output, mine.output),
                         max(have.max_output, mine.max_output), have.model)
        rates[target.model_group] = mine
    return rates


def deployment_rates(catalog: Catalog, target: Any) -> Rates:
    def cost(usage: TokenUsage) -> Decimal:
        parts = CallParts(model=target.model, usage=usage, base_model=target.base_model,
                          custom_llm_provider=target.provider, custom_prices=target.custom_prices)
        return price(catalog, parts).cost.total

    plain = cost(TokenUsage(prompt_tokens=_BIG))
    cache_write = cost(TokenUsage(prompt_tokens=_BIG, cache_creation_input_tokens=_BIG))
    output = cost(TokenUsage(prompt_tokens=_BIG, completion_tokens=_BIG)) - plain
    reasoning = cost(TokenUsage(prompt_tokens=_BIG, completion_tokens=_BIG, reasoning_tokens=_BIG)) - plain
    name = resolve_entry(catalog, model=target.model, base_model=target.base_model,
                         custom_llm_provider=target.provider, has_custom_prices=bool(target.custom_prices))
    entry = catalog.get(name) if name and name != CUSTOM else None
    max_output = DEFAULT_MAX_OUTPUT
    if entry is not None:
        cap = entry.get("max_output_tokens") or entry.get("max_tokens")
        if cap is not None and int(cap) > 0:
            max_output = int(cap)
    return Rates(max(plain, cache_write) / _BIG, max(output, reasoning) / _BIG, max_output, target.model)


def _text_bytes(value: Any) -> int:
    """UTF-8 bytes of the text in a prompt value (string, list of strings / parts / token ids)."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, str):
                total += len(part) if part.isascii() else len(part.encode())
            elif isinstance(part, int):
                total += 1  # a token id
            elif isinstance(part, list):
                total += len(part)  # a list of token ids
            elif isinstance(part, dict):
                text = part.get("text")
                total += _text_bytes(text) if isinstance(text, str) else IMAGE_PART_TOKENS
        return total
    if value is None:
        return 0
    return len(orjson.dumps(value))


def prompt_tokens_bound(call_type: str, body: Mapping[str, Any]) -> int:
    if call_type == "acompletion":
        messages = body.get("messages")
        tokens = 3
        if isinstance(messages, list):
            for message in messages:
                tokens += 4
                if isinstance(message, dict):
                    tokens += _text_bytes(message.get("content"))
                    for name in ("name", "tool_calls", "function_call"):
                        if message.get(name) is not None:
                            tokens += _text_bytes(message[name]) if name == "name" else len(orjson.dumps(message[name]))
        for name in _EXTRA_FIELDS:
            if body.get(name) is not None:
                tokens += len(orjson.dumps(body[name]))
        return tokens
    if call_type == "atext_completion":
        return _text_bytes(body.get("prompt")) + 3
    if call_type == "aembedding":
        return _text_bytes(body.get("input"))
    return _text_bytes(body.get("prompt"))


def completion_tokens_bound(body: Mapping[str, Any], rates: Rates) -> int:
    cap = body.get("max_completion_tokens")
    if cap is None:
        cap = body.get("max_tokens")
    if type(cap) is not int or cap <= 0 or cap > rates.max_output:
        cap = rates.max_output
    n = body.get("n")
    return cap * (n if type(n) is int and n > 1 else 1)


def estimate(catalog: Catalog, rates: Rates | None, call_type: str, body: Mapping[str, Any] | None) -> Decimal:
    """The most the call can cost. Unknown model group or no body: zero (nothing to reserve)."""
    if rates is None or body is None:
        return ZERO
    if call_type == "aimage_generation":
        n = body.get("n")
        usage = TokenUsage(image_count=n if type(n) is int and n > 0 else 1,
                           image_size=str(body.get("size") or "1024x1024"),
                           image_quality=str(body.get("quality") or "hd"))
        return price(catalog, CallParts(model=rates.model, usage=usage, call_type=call_type)).cost.total
    prompt = prompt_tokens_bound(call_type, body)
    if call_type == "aembedding":
        return rates.input * prompt
    return rates.input * prompt + rates.output * completion_tokens_bound(body, rates)
