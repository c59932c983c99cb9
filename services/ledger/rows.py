"""From a priced event to its "LiteLLM_SpendLogs" row: pure, no I/O.

Also the checks that catch what Postgres would refuse (NUL characters, integers past INTEGER),
so one bad event is dead-lettered up front instead of failing its whole batch."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from services.ledger.errors import Unstorable
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
TEAM_ALIAS = "user_api_key_team_alias"  # LiteLLM's name; the proxy puts it in the usage event's metadata
_BREAKDOWN = ("input", "output", "cache_read", "cache_creation", "reasoning", "images", "other")
_INT_COLUMNS = ("total_tokens", "prompt_tokens", "completion_tokens", "request_duration_ms",
                "cache_read_input_tokens", "cache_creation_input_tokens", "reasoning_tokens")


def _metadata(event: PricedUsageEvent | FastPricedEvent) -> dict[str, Any] | None:
    """The spend log's metadata: who called, under the names LiteLLM writes and its dashboards read
    (user_api_key_alias, _team_id, _team_alias, _user_id, _org_id, requester_ip_address), then Tally's own. Only
    what is set, so rows stay small: LiteLLM's `user_api_key` and `usage_object` repeat the api_key
    and token columns (~200 bytes a row) and are left to readers to rebuild from them.
    (Runs once per row on the ingest path: plain attribute reads.)"""
    usage = event.usage_event
    meta: dict[str, Any] = {}
    if usage.key_alias:
        meta["user_api_key_alias"] = usage.key_alias
    if usage.team_id:
        meta["user_api_key_team_id"] = usage.team_id
        alias = usage.metadata.get(TEAM_ALIAS)  # put there by the proxy (calls/attribution.py)
        if isinstance(alias, str):
            meta[TEAM_ALIAS] = alias
    if usage.user_id:
        meta["user_api_key_user_id"] = usage.user_id
    if usage.organization_id:
        meta["user_api_key_org_id"] = usage.organization_id
    if usage.requester_ip_address:
        meta["requester_ip_address"] = usage.requester_ip_address
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


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_nul(v) for v in value)
    return False


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))  # exact digits, never a float
    return str(value)


def json_text(value: Any) -> str:
    """JSON as Postgres' jsonb input takes it; Decimals and integers keep every digit."""
    try:
        return orjson.dumps(value, default=_json_default).decode()
    except TypeError:  # an integer past 64 bits (metadata may hold one): orjson refuses it
        return orjson.dumps(_big_ints_as_text(value), default=_json_default).decode()


def _big_ints_as_text(value: Any) -> Any:
    if type(value) is int and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value))
    if isinstance(value, Mapping):
        return {k: _big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_big_ints_as_text(v) for v in value]
    return value


class SpendLogLine(NamedTuple):
    """A priced event's spend log row, built when it was read, as COPY's text format takes it.
    (A NamedTuple: one is made per event, and a frozen dataclass costs several times as much.)"""

    request_id: str
    end_time: datetime
    text: str  # the cells of SPEND_LOG_COLUMNS, distinct_tags and lease_holder, tab-separated, no newline
    lease_holder: str | None = None  # the budget lease holder that admitted the call (holder_spend.py)


_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_COPY_NULL = "\\N"


def _copy_escaped(text: str) -> str:
    return _COPY_SPECIAL.sub(lambda m: _COPY_ESCAPES[m.group()], text)


_UTC = timezone.utc
_SECOND_TEXT: dict[tuple[int, ...], str] = {}


def _timestamptz(value: datetime) -> str:
    """str(value), as psycopg writes a timestamptz for COPY. For UTC the text of the whole second
    is shared by every call finishing in it (str() of an aware datetime is ~2.5 µs here)."""
    if value.tzinfo is not _UTC:
        return str(value)
    second = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    head = _SECOND_TEXT.get(second)
    if head is None:
        if len(_SECOND_TEXT) >= 10_000:
            _SECOND_TEXT.clear()
        head = _SECOND_TEXT[second] = str(value.replace(microsecond=0))[:-6]
    micro = value.microsecond
    return f"{head}.{micro:06d}+00:00" if micro else head + "+00:00"


def spend_log_line(event: PricedUsageEvent | FastPricedEvent, store_bodies: bool, raw: bytes | None = None) -> SpendLogLine:
    """The event's "LiteLLM_SpendLogs" row, cells in SPEND_LOG_COLUMNS order, as a line of COPY's
    text format (byte for byte what psycopg's own formatter writes for the same values; JSON
    columns as JSON text), then two more cells: the call's distinct tags for the rollups (NULL when
    request_tags has no repeat, the usual case: Postgres then reads request_tags) and the budget
    lease holder that admitted it (for holder_spend.py; never stored in the spend log).

    Raises Unstorable for what Postgres would refuse: an integer past INTEGER, a NUL character.
    `raw`, the event's JSON, lets the scan of JSON values for NUL be skipped when no escaped NUL
    appears in it at all (the common case). Built cell by cell, each by its known type: this runs
    once per event and is a fifth of the ledger's Python."""
    u = event.usage_event
    tokens = u.usage
    prompt, completion = tokens.prompt_tokens, tokens.completion_tokens
    cache_read, cache_creation, reasoning = (tokens.cache_read_input_tokens, tokens.cache_creation_input_tokens,
                                             tokens.reasoning_tokens)
    start, end, first_token = u.start_time, u.end_time, u.completion_start_time
    duration_ms = int((end - start).total_seconds() * 1000)
    if max(prompt + completion, cache_read, cache_creation, reasoning) > INT4_MAX or not -INT4_MAX <= duration_ms <= INT4_MAX:
        _refuse_integers(dict(zip(_INT_COLUMNS, (prompt + completion, prompt, completion, duration_ms, cache_read,
                                                 cache_creation, reasoning))))
    spend, quoted = event.cost.total, u.quoted_cost
    if not spend.is_finite() or (quoted is not None and not quoted.is_finite()):
        raise Unstorable("spend is not a finite number")  # the schemas refuse it; kept as a last guard
    tags = u.request_tags
    meta = _metadata(event)
    messages, response = (u.messages, u.response) if store_bodies else (None, None)
    repeated = len(tags) > 1 and len(set(tags)) < len(tags)
    cells = (
        u.request_id, u.call_type, u.api_key_hash, str(spend), str(prompt + completion), str(prompt), str(completion),
        _timestamptz(start), _timestamptz(end), None if first_token is None else _timestamptz(first_token),
        str(duration_ms), logged_model(u), u.model_id, u.model_group, u.custom_llm_provider, u.api_base, u.user_id,
        None if meta is None else json_text(meta), None, None, json_text(tags), u.team_id, u.organization_id,
        u.end_user, u.requester_ip_address, u.session_id, u.status,
        None if messages is None else json_text(messages), None if response is None else json_text(response), None,
        str(cache_read), str(cache_creation), str(reasoning), event.priced_model, "t" if event.unpriced else "f",
        event.catalog_version, None if quoted is None else str(quoted),
        json_text(list(dict.fromkeys(tags))) if repeated else None, u.lease_holder,
    )
    line = "\t".join([_COPY_NULL if c is None else c for c in cells])
    # Numbers, times and booleans print without any character COPY escapes; so when the line's
    # backslashes are just its NULLs and its tabs just the separators, no cell needs escaping (the
    # usual case, checked in one pass each).
    if (line.count("\\") != cells.count(None) or line.count("\t") != len(cells) - 1
            or "\n" in line or "\r" in line):
        line = "\t".join([_COPY_NULL if c is None else _copy_escaped(c) for c in cells])
    if "\x00" in line or raw is None or b"\\u0000" in raw:
        _refuse_nul(cells, {"metadata": meta, "request_tags": tags, "messages": messages, "response": response})
    return SpendLogLine(u.request_id, end, line, u.lease_holder)


def _refuse_integers(values: dict[str, int]) -> None:
    for name, value in values.items():
        if not -INT4_MAX <= value <= INT4_MAX:
            raise Unstorable(f"{name} {value} is out of Postgres INTEGER's range")


def _refuse_nul(cells: Sequence[str | None], json_values: dict[str, Any]) -> None:
    """Postgres text and JSON refuse NUL: a text cell holding one, or a JSON value (whose text
    holds it escaped, which a plain backslash-u-0000 in a string is not) with one."""
    for name, cell in zip(SPEND_LOG_COLUMNS, cells):
        value = json_values[name] if name in JSON_COLUMNS and name in json_values else cell
        if has_nul(value):
            raise Unstorable(f"{name} contains a NUL character, which Postgres text and JSON refuse")
