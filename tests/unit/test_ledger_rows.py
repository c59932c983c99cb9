"""From a priced event to its spend log row, as a line of COPY's text format."""

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from psycopg._copy_base import TextFormatter
from psycopg.adapt import Transformer

from services.ledger.fast_priced import decode_priced
from services.ledger.errors import Unstorable
from services.ledger.rows import SPEND_LOG_COLUMNS, json_text, logged_model, spend_log_line
from shared.events import CostBreakdown, PricedUsageEvent, TokenUsage, encode
from tests.fixtures.events import T0, priced_event, usage_event


def _copy_cells(line: str) -> list[str | None]:
    """A COPY text line's cells, unescaped (None for NULL)."""
    escapes = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}
    return [None if cell == "\\N" else re.sub(r"\\[\\tnr]", lambda m: escapes[m.group()], cell)
            for cell in line.split("\t")]


# A 1.25 s gpt-4o call by a key with an alias: the plain row the assertions below spell out.
_priced = partial(priced_event, cost=CostBreakdown(input=Decimal("0.0000030"), total=Decimal("0.0000030")),
                  priced_model="gpt-4o", request_id="r1", end_time=T0 + timedelta(milliseconds=1250), key_alias="alias",
                  model="openai/gpt-4o", request_tags=["a", "b"])


def expected_row(event: PricedUsageEvent, store_bodies: bool) -> list[Any]:
    """The row written out by hand from the event (the oracle), Python values as psycopg takes them."""
    u, tokens = event.usage_event, event.usage_event.usage
    meta: dict[str, Any] = {}
    for name, value in (("user_api_key_alias", u.key_alias), ("user_api_key_team_id", u.team_id),
                        ("user_api_key_user_id", u.user_id), ("user_api_key_org_id", u.organization_id),
                        ("requester_ip_address", u.requester_ip_address)):
        if value:
            meta[name] = value
    if u.spend_logs_metadata:
        meta["spend_logs_metadata"] = u.spend_logs_metadata
    if u.status == "failure":
        meta["error_information"] = {"error_code": u.error_status, "error_message": u.error_message}
    if u.soft_budget_exceeded:
        meta["soft_budget_exceeded"] = True
    parts = {k: format(v, "f") for k, v in event.cost.model_dump().items() if k != "total" and v}
    if parts:
        meta["cost_breakdown"] = parts
    model = u.model.split("/", 1)[1] if u.custom_llm_provider and u.model.startswith(u.custom_llm_provider + "/") else u.model
    tags = u.request_tags
    return [
        u.request_id, u.call_type, u.api_key_hash, event.cost.total, tokens.prompt_tokens + tokens.completion_tokens,
        tokens.prompt_tokens, tokens.completion_tokens, u.start_time, u.end_time, u.completion_start_time,
        int((u.end_time - u.start_time).total_seconds() * 1000), model, u.model_id, u.model_group,
        u.custom_llm_provider, u.api_base, u.user_id, json_text(meta) if meta else None, None, None, json_text(tags),
        u.team_id, u.organization_id, u.end_user, u.requester_ip_address, u.session_id, u.status,
        json_text(u.messages) if store_bodies and u.messages is not None else None,
        json_text(u.response) if store_bodies and u.response is not None else None, None,
        tokens.cache_read_input_tokens, tokens.cache_creation_input_tokens, tokens.reasoning_tokens,
        event.priced_model, event.unpriced, event.catalog_version, u.quoted_cost,
        json_text(list(dict.fromkeys(tags))) if len(set(tags)) < len(tags) else None, u.lease_holder,
    ]


def test_copy_lines_carry_the_lease_holder_after_the_spend_log_cells():
    """The budget lease holder travels as the last COPY cell and on the line, for the per-holder count, never in the spend log's cells."""
    line = spend_log_line(_priced(lease_holder="h:4000/0/abc"), False)
    cells = _copy_cells(line.text)
    assert (cells[len(SPEND_LOG_COLUMNS):], line.lease_holder) == ([None, "h:4000/0/abc"], "h:4000/0/abc")
    assert "h:4000/0/abc" not in cells[:len(SPEND_LOG_COLUMNS)]


def test_copy_lines_carry_json_columns_as_exact_text():
    """COPY gets metadata and tags as JSON text with every Decimal digit, and the distinct tags only when a tag repeats."""
    line = spend_log_line(_priced(), False)
    cells = _copy_cells(line.text)
    row = dict(zip(SPEND_LOG_COLUMNS, cells))
    assert (line.request_id, line.end_time) == ("r1", T0 + timedelta(milliseconds=1250))
    assert cells[len(SPEND_LOG_COLUMNS):] == [None, None]
    repeated = spend_log_line(_priced(request_tags=["a", "b", "a"]), False)
    assert _copy_cells(repeated.text)[len(SPEND_LOG_COLUMNS):] == ['["a","b"]', None]
    assert row["metadata"] == '{"user_api_key_alias":"alias","cost_breakdown":{"input":"0.0000030"}}'
    assert row["request_tags"] == '["a","b"]'
    assert (row["spend"], row["request_duration_ms"], row["model"], row["messages"], row["unpriced"]) == (
        "0.0000030", "1250", "gpt-4o", None, "f")
    assert (row["startTime"], row["endTime"]) == ("2026-03-01 12:00:00+00:00", "2026-03-01 12:00:01.250000+00:00")


NASTY = dict(user_id="tab\there", team_id="new\nline\r", end_user="back\\slash", session_id="\\N",
             request_tags=["x\ty", "x\ty"], spend_logs_metadata={"q": "a\\b\tc", "literal": "\\u0000"},
             status="failure", error_status=500, error_message="boom\n", soft_budget_exceeded=True,
             messages=[{"role": "user", "content": "hi"}], response={"ok": True}, quoted_cost=Decimal("0.0000030"))
EVENTS = {
    "plain": _priced(),
    "nasty": _priced(**NASTY),
    "times": _priced(completion_start_time=T0 + timedelta(microseconds=7),
                     usage=TokenUsage(prompt_tokens=3, cache_read_input_tokens=2, reasoning_tokens=1)),
    "offset": _priced(start_time=datetime(2026, 3, 1, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
                      end_time=datetime(2026, 3, 1, 17, 30, 1, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
}


@pytest.mark.parametrize("name", EVENTS)
@pytest.mark.parametrize("decoder", ["pydantic", "msgspec"])
@pytest.mark.parametrize("store_bodies", [False, True])
def test_copy_lines_are_what_psycopg_writes_for_the_same_row(name: str, decoder: str, store_bodies: bool):
    """Whatever the escapes, NULLs, Decimals and time zones, the line is byte for byte psycopg's COPY text of the row."""
    # Escapes: tab, newline, CR, backslash, a literal \N. Times: UTC from either decoder, with and without
    # microseconds, and another offset.
    event = EVENTS[name]
    raw = encode(event)
    decoded = PricedUsageEvent.model_validate_json(raw) if decoder == "pydantic" else decode_priced(raw)
    if decoded is None:
        assert name == "offset"  # not a canonical UTC time: the fast path leaves it to pydantic
        return
    formatter = TextFormatter(Transformer())
    formatter.write_row(expected_row(event, store_bodies))
    assert (spend_log_line(decoded, store_bodies, raw).text + "\n").encode() == bytes(formatter.end())


def test_integers_past_postgres_integer_are_refused_by_column():
    """Token counts or a duration past Postgres INTEGER are refused as Unstorable, naming the column."""
    with pytest.raises(Unstorable, match=r"^total_tokens 2147483648 is out of Postgres INTEGER's range$"):
        spend_log_line(_priced(usage=TokenUsage(prompt_tokens=2**30, completion_tokens=2**30)), False, b"")
    with pytest.raises(Unstorable, match=r"^reasoning_tokens 2147483648 is out"):
        spend_log_line(_priced(usage=TokenUsage(reasoning_tokens=2**31)), False, b"")
    with pytest.raises(Unstorable, match=r"^request_duration_ms -2147483648 is out"):
        spend_log_line(_priced(start_time=T0 + timedelta(milliseconds=1250 + 2**31)), False, b"")


@pytest.mark.parametrize("where, column", [
    (dict(user_id="a\x00b"), "user"),
    (dict(spend_logs_metadata={"k": "a\x00"}), "metadata"),
    (dict(request_tags=["t\x00"]), "request_tags"),
])
def test_nul_characters_are_refused_by_column(where: dict[str, Any], column: str):
    """A NUL character, which Postgres text cannot hold, is refused naming its column, with or without the raw JSON."""
    event = _priced(**where)
    with pytest.raises(Unstorable, match=f"^{column} contains a NUL character"):
        spend_log_line(event, False, encode(event))
    with pytest.raises(Unstorable, match=f"^{column} contains a NUL character"):
        spend_log_line(event, False)  # without the JSON at hand, every value is scanned


def test_a_backslash_u0000_that_is_not_a_nul_is_kept():
    """The escaped text backslash-u0000 in a value, which is not a NUL, is kept as written."""
    event = _priced(spend_logs_metadata={"literal": "\\u0000"})
    cells = dict(zip(SPEND_LOG_COLUMNS, _copy_cells(spend_log_line(event, False, encode(event)).text)))
    assert cells["metadata"] == '{"user_api_key_alias":"alias","spend_logs_metadata":{"literal":"\\\\u0000"},' \
                                '"cost_breakdown":{"input":"0.0000030"}}'


def test_integers_past_64_bits_in_json_columns_keep_every_digit():
    """orjson refuses them; Postgres' jsonb takes them exactly."""
    big = 123456789012345678901234567890
    event = _priced(spend_logs_metadata={"n": big, "list": [-big, 1.5, Decimal("0.10")]})
    cells = dict(zip(SPEND_LOG_COLUMNS, _copy_cells(spend_log_line(event, False, encode(event)).text)))
    assert cells["metadata"] == ('{"user_api_key_alias":"alias","spend_logs_metadata":{"n":123456789012345678901234567890,'
                                 '"list":[-123456789012345678901234567890,1.5,0.10]},"cost_breakdown":{"input":"0.0000030"}}')


def test_spend_logs_name_the_model_without_its_provider_prefix():
    """As in LiteLLM's logs (and the seed's reports): "groq/llama3-8b-8192" is logged as "llama3-8b-8192"."""
    calls = [("groq/llama3-8b-8192", "groq"), ("azure/chatgpt-v-2", "azure"), ("gpt-4o", "openai"), ("ft:gpt-4o:org", None)]
    assert [logged_model(usage_event(model=model, custom_llm_provider=provider)) for model, provider in calls] == [
        "llama3-8b-8192", "chatgpt-v-2", "gpt-4o", "ft:gpt-4o:org"]
