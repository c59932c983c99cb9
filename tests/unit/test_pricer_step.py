"""The pricer's pure step: raw usage message in, priced message or dead-letter reason out."""

from datetime import datetime, timezone
from decimal import Decimal

import orjson

import pytest

from services.pricer.pricing_step import Priced, Rejected, plain, price_message
from shared.events import PricedUsageEvent, TokenUsage, decode, encode
from shared.pricing import load_catalog, price_usage_event
from shared.pricing.versions import CatalogVersions
from tests.fixtures.events import T0, usage_event

CATALOG = load_catalog()
CATALOGS = CatalogVersions(CATALOG)
PRICED_AT = "2024-05-13T12:00:01.500000+00:00"


def test_priced_message_decodes_to_the_same_model_a_full_encode_gives():
    """The spliced JSON equals PricedUsageEvent built and encoded the slow way, field for field."""
    event = usage_event(request_tags=["a"], quoted_cost=Decimal("0.000051"))
    outcome = price_message(CATALOGS, encode(event), PRICED_AT)
    assert isinstance(outcome, Priced)
    spliced = decode(outcome.value)
    result = price_usage_event(CATALOG, event)
    expected = PricedUsageEvent(event_id="req-1", usage_event=event, cost=result.cost, priced_model=result.priced_model,
                                unpriced=result.unpriced, catalog_version=CATALOG.version, priced_at=spliced.priced_at)
    assert spliced == expected


def test_priced_event_carries_the_batch_time_stamp():
    """priced_at is the time stamp the consumer took for the batch, not a clock read per event."""
    outcome = price_message(CATALOGS, encode(usage_event()), PRICED_AT)
    assert decode(outcome.value).priced_at == datetime(2024, 5, 13, 12, 0, 1, 500000, tzinfo=timezone.utc)


def test_cost_text_is_what_money_serialisation_writes():
    """1 prompt token of gpt-4o-mini costs 1.5E-7: written "0.00000015", exactly as encode() writes it."""
    event = usage_event(usage=TokenUsage(prompt_tokens=1, completion_tokens=0))
    outcome = price_message(CATALOGS, encode(event), PRICED_AT)
    result = price_usage_event(CATALOG, event)
    expected = PricedUsageEvent(event_id="req-1", usage_event=event, cost=result.cost, priced_model=result.priced_model,
                                unpriced=result.unpriced, catalog_version=CATALOG.version, priced_at=T0)
    cost = orjson.loads(outcome.value)["cost"]
    assert cost == orjson.loads(encode(expected))["cost"]
    assert (cost["input"], cost["total"], cost["output"]) == ("0.00000015", "0.00000015", "0")


@pytest.mark.parametrize(("amount", "text"), [
    ("0", "0"), ("0E-10", "0.0000000000"), ("-0", "-0"), ("0.000051", "0.000051"), ("0.000001", "0.000001"),
    ("1E-7", "0.0000001"), ("1.5E-7", "0.00000015"), ("0.00000300", "0.00000300"), ("1E+2", "100"),
    ("1.20E+3", "1200"), ("123.456", "123.456"), ("12345678901234567890.000000000000000001", "12345678901234567890.000000000000000001"),
])
def test_plain_writes_money_without_an_exponent(amount, text):
    """plain() gives format(d, "f")'s text for small, large, zero and exponent-carrying amounts."""
    assert plain(Decimal(amount)) == text == format(Decimal(amount), "f")


def test_priced_cost_is_exact():
    """gpt-4o-mini, 20 in + 80 out: 20 * 1.5e-07 + 80 * 6e-07 = 0.000051."""
    outcome = price_message(CATALOGS, encode(usage_event()), PRICED_AT)
    assert decode(outcome.value).cost.total == Decimal("0.000051")


def test_unknown_model_is_priced_zero_and_marked():
    """A model with no price is not dropped: spend 0 with the unpriced marker."""
    outcome = price_message(CATALOGS, encode(usage_event(model="openai/no-such-model", model_group="x")), PRICED_AT)
    priced = decode(outcome.value)
    assert (outcome.unpriced, priced.unpriced, priced.cost.total, priced.priced_model) == (True, True, Decimal(0), None)


def test_missing_field_is_rejected_with_its_name():
    """An event without request_id goes to the dead letters, saying which field is missing."""
    data = orjson.loads(encode(usage_event()))
    del data["request_id"]
    assert price_message(CATALOGS, orjson.dumps(data), PRICED_AT) == Rejected("invalid usage event: request_id: Field required")


def test_not_json_is_rejected():
    """Bytes that are not JSON are rejected, not raised."""
    outcome = price_message(CATALOGS, b"\xff not json", PRICED_AT)
    assert isinstance(outcome, Rejected) and outcome.reason.startswith("unreadable usage event")


def test_unknown_call_type_is_rejected():
    """A call type the schema does not know is a dead letter, never a guess."""
    data = orjson.loads(encode(usage_event()))
    data["call_type"] = "avideo"
    outcome = price_message(CATALOGS, orjson.dumps(data), PRICED_AT)
    assert isinstance(outcome, Rejected) and outcome.reason.startswith("invalid usage event: call_type:")


def test_more_cached_than_prompt_tokens_is_rejected():
    """Counts that contradict each other are rejected rather than priced wrongly."""
    event = usage_event(usage=TokenUsage(prompt_tokens=10, completion_tokens=5, cache_read_input_tokens=11))
    outcome = price_message(CATALOGS, encode(event), PRICED_AT)
    assert isinstance(outcome, Rejected) and outcome.reason.startswith("inconsistent usage")


def test_empty_message_is_rejected():
    """A tombstone or empty value is rejected."""
    assert price_message(CATALOGS, None, PRICED_AT) == Rejected("empty message")
