"""The ledger's fast decoder of priced events: msgspec structs mirroring `shared.events`.

Decoding a 1.6 KB priced event with pydantic-core took ~43 µs of the ledger's ~100 µs per event;
msgspec's typed decoder does it in about half. It is only a fast path: `decode_priced` returns None
for anything it is not sure pydantic would decode to the same values (a datetime that is not in
the canonical form pydantic writes, a non-finite or negative number where the model forbids one,
a lax coercion such as "5" for an int that msgspec refuses), and the caller then decodes with
pydantic, which also gives the precise error. So what the ledger accepts, and every value it
stores, is what `PricedUsageEvent` says; tests/unit/test_ledger_fast_priced.py holds the two
schemas field for field and the two decoders value for value.

The structs keep the models' attribute names, so `rows.spend_log_line` takes either."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from services.ledger.errors import LedgerError
from shared.events import MAX_LEASE_HOLDER_CHARS

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
CallType = Literal["acompletion", "atext_completion", "aembedding", "aimage_generation"]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class FastTokenUsage(Strict):
    prompt_tokens: NonNegative = 0
    completion_tokens: NonNegative = 0
    cache_read_input_tokens: NonNegative = 0
    cache_creation_input_tokens: NonNegative = 0
    reasoning_tokens: NonNegative = 0
    image_count: NonNegative = 0
    image_size: str | None = None
    image_quality: str | None = None
    input_characters: NonNegative = 0
    duration_seconds: Any = "0"  # money and other Decimals: see `_decimal`

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class FastUsageEvent(Strict):
    request_id: str
    call_type: CallType
    start_time: Any  # datetimes: see `_instant`
    end_time: Any
    api_key_hash: str
    model_group: str
    model: str
    event_id: str = ""
    type: Literal["usage"] = "usage"
    schema_version: Literal[1] = 1
    status: Literal["success", "failure"] = "success"
    stream: bool = False
    completion_start_time: Any = None
    key_alias: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    organization_id: str | None = None
    end_user: str | None = None
    model_id: str | None = None
    custom_llm_provider: str | None = None
    api_base: str | None = None
    response_model: str | None = None
    base_model: str | None = None
    custom_prices: dict[str, Any] = {}
    usage: FastTokenUsage = msgspec.field(default_factory=FastTokenUsage)
    request_tags: list[str] = []
    spend_logs_metadata: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    error_status: int | None = None
    error_message: str | None = None
    soft_budget_exceeded: bool = False
    quoted_cost: Any = None
    quoted_catalog_version: str | None = None
    requester_ip_address: str | None = None
    session_id: str | None = None
    messages: Any = None
    response: Any = None
    lease_holder: Annotated[str, msgspec.Meta(max_length=MAX_LEASE_HOLDER_CHARS)] | None = None


class FastCostBreakdown(Strict):
    input: Any = "0"
    output: Any = "0"
    cache_read: Any = "0"
    cache_creation: Any = "0"
    reasoning: Any = "0"
    images: Any = "0"
    other: Any = "0"
    total: Any = "0"


class FastPricedEvent(Strict):
    usage_event: FastUsageEvent
    cost: FastCostBreakdown
    priced_model: str | None
    catalog_version: str
    event_id: str = ""
    type: Literal["priced_usage"] = "priced_usage"
    schema_version: Literal[1] = 1
    unpriced: bool = False
    priced_at: Any = msgspec.UNSET

    @property
    def request_id(self) -> str:
        return self.usage_event.request_id


_DECODER = msgspec.json.Decoder(FastPricedEvent)
_fromisoformat = datetime.fromisoformat


class NotCanonical(LedgerError, ValueError):
    """Valid or not, this event is for pydantic to decide."""


def _instant(text: Any) -> datetime:
    """Only the two forms pydantic writes for a UTC datetime, "2026-11-28T09:42:12.497627Z" and
    "2026-11-28T09:42:12Z", on which `fromisoformat` and pydantic agree to the microsecond (on
    other forms they can differ: a seventh fraction digit is rounded by one, cut by the other)."""
    if type(text) is not str or (len(text) != 27 and len(text) != 20) or text[-1] != "Z" or text[10] != "T" \
            or not text[:4].isdigit():
        raise NotCanonical
    return _fromisoformat(text)


# Most amounts repeat ("0" for the parts a call did not use, the same price for the same tokens):
# a Decimal is immutable, so one per distinct text is shared (bounded, cleared when full).
_DECIMALS: dict[str, Decimal] = {}


def _decimal(text: Any) -> Decimal:
    """Decimals travel as strings, which both decoders read with Python's Decimal; a JSON number
    is left to pydantic (it goes through a float there, exactly here), as is NaN or Infinity,
    which the models refuse."""
    if type(text) is not str:
        raise NotCanonical
    value = _DECIMALS.get(text)
    if value is None:
        value = Decimal(text)
        if not value.is_finite():
            raise NotCanonical
        if len(_DECIMALS) >= 10_000:
            _DECIMALS.clear()
        _DECIMALS[text] = value
    return value


def decode_priced(raw: bytes) -> FastPricedEvent | None:
    """The event, when it is a current-version priced event in canonical form; otherwise None."""
    try:
        event = _DECODER.decode(raw)
        usage = event.usage_event
        usage.start_time = _instant(usage.start_time)
        usage.end_time = _instant(usage.end_time)
        if usage.completion_start_time is not None:
            usage.completion_start_time = _instant(usage.completion_start_time)
        if event.priced_at is not msgspec.UNSET:
            event.priced_at = _instant(event.priced_at)
        cost = event.cost
        cost.input, cost.output, cost.cache_read, cost.cache_creation, cost.reasoning, cost.images, cost.other, \
            cost.total = map(_decimal, (cost.input, cost.output, cost.cache_read, cost.cache_creation, cost.reasoning,
                                        cost.images, cost.other, cost.total))
        if usage.quoted_cost is not None:
            usage.quoted_cost = _decimal(usage.quoted_cost)
        if usage.custom_prices:
            usage.custom_prices = {k: _decimal(v) for k, v in usage.custom_prices.items()}
        tokens = usage.usage
        tokens.duration_seconds = _decimal(tokens.duration_seconds)
        if tokens.duration_seconds < 0:
            return None
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, ArithmeticError):
        return None  # NotCanonical, or a Decimal's text Python refuses
    return event
