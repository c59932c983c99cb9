"""Event schemas: round trips, exact money, strictness, upcasting."""

from datetime import datetime, timezone
from decimal import Decimal
from functools import partial

import orjson
import pytest
from pydantic import ValidationError

from shared import events
from shared.events import CostBreakdown, PricedUsageEvent, TokenUsage, decode, encode
from tests.fixtures.events import usage_event as make_usage_event

T0 = datetime(2024, 5, 13, 12, 0, tzinfo=timezone.utc)


# The seed page's llama3 call, at this module's own time.
usage_event = partial(make_usage_event, start_time=T0, end_time=T0, model_group="llama3", model="groq/llama3-8b-8192",
                      custom_llm_provider=None)


def test_usage_event_round_trips_through_json():
    """encode then decode gives back an equal event."""
    event = usage_event(quoted_cost=Decimal("0.0000074"))
    assert decode(encode(event)) == event


def test_money_travels_as_exact_decimal_text():
    """A Decimal cost is written as its plain decimal digits, never a float or exponent."""
    event = usage_event(quoted_cost=Decimal("5.1E-5"))
    assert orjson.loads(encode(event))["quoted_cost"] == "0.000051"


def test_priced_event_keeps_every_digit():
    """A 28-digit cost survives the trip unchanged."""
    cost = Decimal("0.0000012345678901234567890123")
    priced = PricedUsageEvent(usage_event=usage_event(), cost=CostBreakdown(input=cost, total=cost),
                              priced_model="x", catalog_version="v1")
    assert decode(encode(priced)).cost.total == cost


def test_unknown_fields_are_rejected():
    """extra="forbid": a field the schema does not know is an error, not silently dropped."""
    data = orjson.loads(encode(usage_event()))
    data["surprise"] = 1
    with pytest.raises(ValidationError):
        decode(orjson.dumps(data))


def test_negative_token_counts_are_rejected():
    """Token counts are never negative."""
    with pytest.raises(ValidationError):
        TokenUsage(prompt_tokens=-1)


def test_naive_timestamps_are_rejected():
    """Event time must be unambiguous: a timestamp without a timezone is refused."""
    with pytest.raises(ValidationError):
        usage_event(start_time=datetime(2024, 5, 13, 12, 0))


def test_newer_schema_version_is_refused():
    """An event from a newer producer is not misread as the current version."""
    data = orjson.loads(encode(usage_event()))
    data["schema_version"] = 2
    with pytest.raises(events.UnknownEventVersion):
        decode(orjson.dumps(data))


def test_upcaster_runs_for_old_versions(monkeypatch):
    """A registered upcaster turns an old version into the current one before validation."""
    monkeypatch.setitem(events.CURRENT_VERSION, "spend_reset", 2)
    monkeypatch.setitem(events.UPCASTERS, ("spend_reset", 1), lambda d: {**d, "schema_version": 2, "upcast": True})
    assert events.upcast({"type": "spend_reset", "schema_version": 1}) == {"type": "spend_reset", "schema_version": 2, "upcast": True}
