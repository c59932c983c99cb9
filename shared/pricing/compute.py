"""The one pure pricing function: catalog + one call's usage -> cost breakdown.

Used by the proxy for x-litellm-response-cost and by the pricer for the authoritative cost, so
both say the same number for the same catalog.

Token convention (TokenUsage): prompt_tokens INCLUDES the cached tokens (cache_read_input_tokens
and cache_creation_input_tokens are parts of it), and completion_tokens INCLUDES reasoning_tokens.
OpenAI reports usage this way. Anthropic reports input_tokens, cache_read_input_tokens and
cache_creation_input_tokens as three separate counts, so its adapter must add them up into
prompt_tokens; Gemini's thought tokens likewise go into completion_tokens.

Rules:
- Cached tokens are charged at cache_read_input_token_cost / cache_creation_input_token_cost when
  the entry has that rate, and only the rest of the prompt at input_cost_per_token. Without the
  rate they stay in the prompt at the input rate.
- Reasoning tokens are charged at output_cost_per_reasoning_token when the entry has it (and the
  rest of the completion at the output rate); otherwise they are output like any other.
- `<field>_above_<N>k_tokens`: when the prompt has more than N*1000 tokens, that rate applies to
  every token of that kind (LiteLLM's tiers: 128k, 200k, 272k ...).
- Images (image_count > 0): input_cost_per_image × n, else input_cost_per_pixel × width × height × n,
  plus the output_cost_per_image / output_cost_per_pixel equivalents.
- Embeddings: prompt tokens only.
- input_cost_per_character × input_characters and input_cost_per_second × duration_seconds go to
  `other`; an adapter fills those counts only for calls billed that way (speech, transcription).
- Exact Decimal arithmetic, no rounding anywhere. A call nothing in the catalog prices is
  `unpriced` with a zero cost, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow
from typing import Any, NamedTuple, Protocol

from shared.events import CostBreakdown, TokenUsage
from shared.pricing.catalog import Catalog, checked_entry
from shared.pricing.resolve import CUSTOM, image_dimensions, resolve_entry

# Precision is unbounded, so sums and products of finite Decimals are exact by construction;
# Inexact is trapped anyway so that a rounding could never pass silently.
_EXACT = Context(
    prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact, Overflow, DivisionByZero]
)
_mul = _EXACT.multiply
_add = _EXACT.add
_ZERO = Decimal(0)
_new_breakdown = CostBreakdown.__new__
_set = object.__setattr__
_BREAKDOWN_FIELDS = frozenset(CostBreakdown.model_fields)

# Our name for each rate -> LiteLLM's field.
RATE_FIELDS = {
    "input": "input_cost_per_token",
    "output": "output_cost_per_token",
    "cache_read": "cache_read_input_token_cost",
    "cache_creation": "cache_creation_input_token_cost",
    "reasoning": "output_cost_per_reasoning_token",
    "image_in": "input_cost_per_image",
    "image_out": "output_cost_per_image",
    "pixel_in": "input_cost_per_pixel",
    "pixel_out": "output_cost_per_pixel",
    "character": "input_cost_per_character",
    "second": "input_cost_per_second",
}
_RATE_OF_FIELD = {litellm: ours for ours, litellm in RATE_FIELDS.items()}
_TIER_FIELD = re.compile(r"^(?P<field>.+)_above_(?P<thousands>\d+)k_tokens$")
_RULES = "compute.rules"
_UNSEEN = object()
_new_tuple = tuple.__new__
_MEMO_LIMIT = 50_000  # distinct (model, response model, ...) combinations; far above real configs


class InconsistentUsage(ValueError):
    """Counts that contradict the TokenUsage convention (more cached tokens than prompt tokens,
    more reasoning tokens than completion tokens): an adapter bug, not a price to guess."""


class PriceableCall(Protocol):
    """What pricing reads from a call; UsageEvent and CallParts both have it."""

    @property
    def model(self) -> str: ...
    @property
    def base_model(self) -> str | None: ...
    @property
    def response_model(self) -> str | None: ...
    @property
    def custom_llm_provider(self) -> str | None: ...
    @property
    def custom_prices(self) -> Mapping[str, Decimal]: ...
    @property
    def call_type(self) -> str: ...
    @property
    def usage(self) -> TokenUsage: ...


@dataclass(frozen=True, slots=True)
class CallParts:
    """A call to price when there is no UsageEvent yet (the proxy's header, /spend/calculate)."""

    model: str
    usage: TokenUsage = field(default_factory=TokenUsage)
    call_type: str = "acompletion"
    base_model: str | None = None
    response_model: str | None = None
    custom_llm_provider: str | None = None
    custom_prices: Mapping[str, Decimal] = field(default_factory=dict)


class PriceResult(NamedTuple):
    cost: CostBreakdown
    priced_model: str | None  # the catalog entry, or "custom"; None when unpriced
    unpriced: bool


UNPRICED = PriceResult(CostBreakdown(), None, True)


@dataclass(frozen=True, slots=True)
class Rates:
    """The rates pricing reads from one entry, for one prompt-size tier. None: no such rate."""

    input: Decimal | None = None
    output: Decimal | None = None
    cache_read: Decimal | None = None
    cache_creation: Decimal | None = None
    reasoning: Decimal | None = None
    image_in: Decimal | None = None
    image_out: Decimal | None = None
    pixel_in: Decimal | None = None
    pixel_out: Decimal | None = None
    character: Decimal | None = None
    second: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PriceRule:
    """One entry prepared for pricing: its base rates and, highest threshold first, the rates
    that apply once the prompt is over each tier's threshold."""

    name: str
    rates: Rates
    tiers: tuple[tuple[int, Rates], ...] = ()
    embedding: bool = False

    def rates_for(self, prompt_tokens: int) -> Rates:
        for threshold, rates in self.tiers:
            if prompt_tokens > threshold:
                return rates
        return self.rates


def price(catalog: Catalog, call: PriceableCall) -> PriceResult:
    """Price one call (a UsageEvent, or CallParts). Name resolution and rate preparation happen
    once per distinct call shape and are remembered on the catalog."""
    usage = call.usage
    rules = catalog.memo.get(_RULES)
    if rules is None:
        rules = catalog.memo[_RULES] = {}
    if call.custom_prices:
        shape: tuple[Any, ...] = (CUSTOM, *call.custom_prices.items())
    elif usage.image_count:
        shape = (
            call.model, call.base_model, call.response_model, call.custom_llm_provider,
            usage.image_size, usage.image_quality,
        )
    else:
        shape = (call.model, call.base_model, call.response_model, call.custom_llm_provider)
    rule = rules.get(shape, _UNSEEN)
    if rule is _UNSEEN:
        if len(rules) >= _MEMO_LIMIT:
            rules.clear()
        rule = rules[shape] = _rule_for(catalog, call, usage)
    if rule is None:
        return UNPRICED
    cost = charge(rule, usage, rule.embedding or call.call_type == "aembedding")
    # NamedTuple's generated __new__ is a Python-level frame; this builds the same tuple without it.
    return _new_tuple(PriceResult, (cost, rule.name, False))


# The one entry point of the proxy (x-litellm-response-cost) and the pricer (authoritative cost).
price_usage_event = price


def charge(rule: PriceRule, usage: TokenUsage, embedding: bool = False) -> CostBreakdown:
    """The cost of `usage` under `rule`; see the module docstring for the rules."""
    prompt = usage.prompt_tokens
    rates = rule.rates_for(prompt) if rule.tiers else rule.rates
    input_cost = output = cache_read = cache_creation = reasoning = images = other = _ZERO

    text_in = prompt
    read, written = usage.cache_read_input_tokens, usage.cache_creation_input_tokens
    if read or written:
        if read + written > prompt:
            raise InconsistentUsage(
                f"cache tokens ({read} read + {written} written) exceed prompt_tokens ({prompt}), "
                "which must include them"
            )
        if read and rates.cache_read is not None:
            text_in -= read
            cache_read = _mul(rates.cache_read, read)
        if written and rates.cache_creation is not None:
            text_in -= written
            cache_creation = _mul(rates.cache_creation, written)
    if text_in and rates.input is not None:
        input_cost = _mul(rates.input, text_in)

    if not embedding:
        completion = usage.completion_tokens
        thinking = usage.reasoning_tokens
        if thinking:
            if thinking > completion:
                raise InconsistentUsage(
                    f"reasoning_tokens ({thinking}) exceed completion_tokens ({completion}), which must include them"
                )
            if rates.reasoning is not None:
                completion -= thinking
                reasoning = _mul(rates.reasoning, thinking)
        if completion and rates.output is not None:
            output = _mul(rates.output, completion)

    total = _add(input_cost, output)
    if cache_read or cache_creation or reasoning:
        total = _add(_add(total, cache_read), _add(cache_creation, reasoning))
    if usage.image_count:
        images = _image_cost(rates, usage)
        total = _add(total, images)
    if usage.input_characters or usage.duration_seconds:
        other = _other_cost(rates, usage)
        total = _add(total, other)
    # CostBreakdown built the way pydantic's model_construct does, without re-validating: every
    # value is a finite non-negative Decimal computed just above, and validation would take most
    # of the per-call budget. test_breakdown_equals_the_validated_model guards this.
    breakdown = _new_breakdown(CostBreakdown)
    _set(breakdown, "__dict__", {
        "input": input_cost, "output": output, "cache_read": cache_read, "cache_creation": cache_creation,
        "reasoning": reasoning, "images": images, "other": other, "total": total,
    })
    _set(breakdown, "__pydantic_fields_set__", set(_BREAKDOWN_FIELDS))
    _set(breakdown, "__pydantic_extra__", None)
    _set(breakdown, "__pydantic_private__", None)
    return breakdown


def _image_cost(rates: Rates, usage: TokenUsage) -> Decimal:
    # A per-image list price wins over a per-pixel rate: LiteLLM's gpt-image-1 entries carry both,
    # and the per-pixel one is the per-image price divided by the pixels, rounded.
    count = usage.image_count
    dimensions = image_dimensions(usage.image_size) or (1024, 1024)  # OpenAI's default size
    pixels = dimensions[0] * dimensions[1] * count
    cost = _ZERO
    for per_image, per_pixel in ((rates.image_in, rates.pixel_in), (rates.image_out, rates.pixel_out)):
        if per_image is not None:
            cost = _add(cost, _mul(per_image, count))
        elif per_pixel is not None:
            cost = _add(cost, _mul(per_pixel, pixels))
    return cost


def _other_cost(rates: Rates, usage: TokenUsage) -> Decimal:
    cost = _ZERO
    if rates.character is not None and usage.input_characters:
        cost = _add(cost, _mul(rates.character, usage.input_characters))
    if rates.second is not None and usage.duration_seconds:
        cost = _add(cost, _mul(rates.second, usage.duration_seconds))
    return cost


def _rule_for(catalog: Catalog, call: PriceableCall, usage: TokenUsage) -> PriceRule | None:
    if call.custom_prices:
        return prepare_rule(CUSTOM, checked_entry("custom prices", CUSTOM, dict(call.custom_prices)))
    name = resolve_entry(
        catalog,
        model=call.model,
        base_model=call.base_model,
        response_model=call.response_model,
        custom_llm_provider=call.custom_llm_provider,
        image_size=usage.image_size if usage.image_count else None,
        image_quality=usage.image_quality if usage.image_count else None,
    )
    return prepare_rule(name, catalog.entries[name]) if name is not None else None


def prepare_rule(name: str, entry: Mapping[str, Any]) -> PriceRule:
    """Read an entry's rates once: base rates plus one complete Rates per tier threshold."""
    base: dict[str, Decimal] = {}
    by_threshold: dict[int, dict[str, Decimal]] = {}
    for key, value in entry.items():
        if not isinstance(value, Decimal):
            continue
        if key in _RATE_OF_FIELD:
            base[_RATE_OF_FIELD[key]] = value
        elif (tier := _TIER_FIELD.match(key)) and tier["field"] in _RATE_OF_FIELD:
            by_threshold.setdefault(int(tier["thousands"]) * 1000, {})[_RATE_OF_FIELD[tier["field"]]] = value
    rates = Rates(**base)
    tiers = []
    current = rates
    # Each tier keeps the lower tiers' rates for kinds it does not re-price.
    for threshold in sorted(by_threshold):
        current = replace(current, **by_threshold[threshold])
        tiers.append((threshold, current))
    return PriceRule(name=name, rates=rates, tiers=tuple(reversed(tiers)), embedding=entry.get("mode") == "embedding")
