"""From a priced event to its "LiteLLM_SpendLogs" row: pure, no I/O.

Also the checks that catch what Postgres would refuse (NUL characters, integers past INTEGER),
so one bad event is dead-lettered up front instead of failing its whole batch."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from services.ledger.fast_priced import FastPricedEvent, FastUsageEvent
from shared.events import PricedUsageEvent, UsageEvent

# call_type → the "endpoint" dimension of LiteLLM's daily tables.
ENDPOINTS: dict[str, str] = {
    "acompletion": "/chat/completions",
    "atext_completion": "/completions",
    "aembedding": "/embeddings",
    "aimage_generation": "/images/generations",
}

SPEND_LOG_COLUMNS: tuple[str, ...] = (
    "request_id", "call_type", "api_key", "spend", "total_tokens", "prompt_tokens",
    "completion_tokens", "startTime", "endTime", "completionStartTime", "request_duration_ms",
    "model", "model_id", "model_group", "custom_llm_provider", "api_base", "user", "metadata",
    "cache_hit", "cache_key", "request_tags", "team_id", "organization_id", "end_user",
    "requester_ip_address", "session_id", "status", "messages", "response", "proxy_server_request",
    "cache_read_input_tokens", "cache_creation_input_tokens", "reasoning_tokens", "priced_model",
    "unpriced", "catalog_version", "quoted_spend",
)
JSON_COLUMNS = frozenset({"metadata", "request_tags", "messages", "response", "proxy_server_request"})
INT4_MAX = 2**31 - 1
_BREAKDOWN = ("input", "output", "cache_read", "cache_creation", "reasoning", "images", "other")
_INT_COLUMNS = ("total_tokens", "prompt_tokens", "completion_tokens", "request_duration_ms",
                "cache_read_input_tokens", "cache_creation_input_tokens", "reasoning_tokens")
_INT_AT = tuple(SPEND_LOG_COLUMNS.index(c) for c in _INT_COLUMNS)
_JSON_AT = tuple(i for i, name in enumerate(SPEND_LOG_COLUMNS) if name in JSON_COLUMNS)
_TAGS_AT = SPEND_LOG_COLUMNS.index("request_tags")
_END_AT = SPEND_LOG_COLUMNS.index("endTime")
_MONEY_AT = tuple(SPEND_LOG_COLUMNS.index(c) for c in ("spend", "quoted_spend"))


class Unstorable(ValueError):
    """The event is valid by its schema but Postgres would refuse it: it goes to the dead letters."""


def _metadata(event: PricedUsageEvent | FastPricedEvent) -> dict[str, Any] | None:
    """The spend log's metadata: only what is set, so rows stay small. (Runs once per row on the
    ingest path: plain attribute reads, no getattr loop.)"""
    usage = event.usage_event
    meta: dict[str, Any] = {}
    if usage.key_alias:
        meta["user_api_key_alias"] = usage.key_alias
    if usage.spend_logs_metadata:
        meta["spend_logs_metadata"] = usage.spend_logs_metadata
    if usage.status == "failure":
        meta["error_information"] = {"error_code": usage.error_status, "error_message": usage.error_message}
    if usage.soft_budget_exceeded:
        meta["soft_budget_exceeded"] = True
    cost = event.cost
    breakdown = {k: format(v, "f") for k, v in zip(_BREAKDOWN, (
        cost.input, cost.output, cost.cache_read, cost.cache_creation, cost.reasoning, cost.images, cost.other)) if v}
    if breakdown:
        meta["cost_breakdown"] = breakdown
    return meta or None


def logged_model(usage: UsageEvent | FastUsageEvent) -> str:
    """The deployment's model without its provider prefix ("groq/llama3-8b-8192" is logged as
    "llama3-8b-8192", the provider going to custom_llm_provider), as LiteLLM's spend logs have it."""
    provider = usage.custom_llm_provider
    if provider and usage.model.startswith(provider + "/"):
        return usage.model[len(provider) + 1 :]
    return usage.model


def spend_log_row(event: PricedUsageEvent | FastPricedEvent, store_bodies: bool) -> tuple[Any, ...]:
    """The row, in SPEND_LOG_COLUMNS order; JSON columns hold plain Python values."""
    u = event.usage_event
    tokens = u.usage
    duration_ms = int((u.end_time - u.start_time).total_seconds() * 1000)
    return (
        u.request_id, u.call_type, u.api_key_hash, event.cost.total, tokens.total_tokens,
        tokens.prompt_tokens, tokens.completion_tokens, u.start_time, u.end_time,
        u.completion_start_time, duration_ms, logged_model(u), u.model_id, u.model_group,
        u.custom_llm_provider, u.api_base, u.user_id, _metadata(event),
        None, None, list(u.request_tags), u.team_id, u.organization_id, u.end_user,
        u.requester_ip_address, u.session_id, u.status,
        u.messages if store_bodies else None, u.response if store_bodies else None, None,
        tokens.cache_read_input_tokens, tokens.cache_creation_input_tokens, tokens.reasoning_tokens,
        event.priced_model, event.unpriced, event.catalog_version, u.quoted_cost,
    )


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_nul(v) for v in value)
    return False


def check_storable(row: Sequence[Any], raw: bytes | None = None) -> None:
    """Raise Unstorable for what Postgres would reject in a spend log row. `raw`, the event's JSON,
    lets the NUL scan be skipped when no escaped NUL appears in it at all (the common case)."""
    for i in _INT_AT:
        value = row[i]
        if value is not None and not -INT4_MAX <= value <= INT4_MAX:
            raise Unstorable(f"{SPEND_LOG_COLUMNS[i]} {value} is out of Postgres INTEGER's range")
    for i in _MONEY_AT:
        value = row[i]
        if isinstance(value, Decimal) and not value.is_finite():
            raise Unstorable(f"{SPEND_LOG_COLUMNS[i]} is not a finite number")
    if raw is not None and b"\\u0000" not in raw:
        return
    for name, value in zip(SPEND_LOG_COLUMNS, row):
        if has_nul(value):
            raise Unstorable(f"{name} contains a NUL character, which Postgres text and JSON refuse")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))  # exact digits, never a float
    return str(value)


def json_text(value: Any) -> str:
    """JSON as Postgres' jsonb input takes it; Decimals keep every digit."""
    return orjson.dumps(value, default=_json_default).decode()


class SpendLogLine(NamedTuple):
    """A priced event's spend log row, built when it was read, as COPY's text format takes it.
    (A NamedTuple: one is made per event, and a frozen dataclass costs several times as much.)"""

    request_id: str
    end_time: datetime
    text: str  # the cells of SPEND_LOG_COLUMNS and distinct_tags, tab-separated, no newline


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_COPY_NULL = "\\N"


def _copy_escaped(text: str) -> str:
    return _COPY_SPECIAL.sub(lambda m: _COPY_ESCAPES[m.group()], text)


def copy_line(row: Sequence[Any]) -> SpendLogLine:
    """The row for the COPY into the batch's temp table, in COPY's text format (as psycopg's own
    formatter writes it): JSON columns as JSON text, then one more cell, the call's distinct tags
    for the rollups (NULL when request_tags has no repeat, the usual case: Postgres then reads
    request_tags). Call it after `check_storable`, which needs the JSON values unserialised to
    find NUL characters."""
    cells = list(row)
    tags = cells[_TAGS_AT]
    repeated = len(tags) > 1 and len(set(tags)) < len(tags)
    for i in _JSON_AT:
        if cells[i] is not None:
            cells[i] = json_text(cells[i])
    cells.append(json_text(list(dict.fromkeys(tags))) if repeated else None)
    # int, Decimal (every digit) and datetime (ISO with its offset) print without any character
    # COPY escapes; so when the line's backslashes are just its NULLs and its tabs just the
    # separators, no text cell needs escaping (the usual case, checked in one pass each).
    texts = [v if type(v) is str else _COPY_NULL if v is None else ("t" if v else "f") if type(v) is bool else str(v)
             for v in cells]
    line = "\t".join(texts)
    if (line.count("\\") != cells.count(None) or line.count("\t") != len(texts) - 1
            or "\n" in line or "\r" in line):
        line = "\t".join(t if c is None else _copy_escaped(t) for t, c in zip(texts, cells))
    return SpendLogLine(row[0], row[_END_AT], line)
