"""One finished call as a UsageEvent. Pure: every value is handed in.

Built without validation (what pydantic's `model_construct` does, minus its per-field loop): this
runs once per call on the hot path and every value comes from already-checked sources (typed
config, the normalised TokenUsage, the caller's identity). tests/unit/test_proxy_record.py proves
the result equals a fully validated UsageEvent."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from services.proxy.auth.keys import CallerIdentity
from services.proxy.calls.attribution import Attribution
from services.proxy.calls.limits import MAX_ERROR_MESSAGE_CHARS, MAX_RESPONSE_MODEL_CHARS, recordable
from services.proxy.routing.router import Target
from shared.events import TokenUsage, UsageEvent, encode

M = TypeVar("M", bound=BaseModel)

_ALL_FIELDS = set(UsageEvent.model_fields)
_USAGE_FIELDS = set(TokenUsage.model_fields)
_USAGE_DEFAULTS = TokenUsage().__dict__


def _unvalidated(cls: type[M], values: dict[str, Any], fields_set: set[str]) -> M:
    """What pydantic's model_construct does for a complete field dict, without its per-field loop."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", fields_set)
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def construct(values: dict[str, Any]) -> UsageEvent:
    """A UsageEvent from a complete field dict, unvalidated (the dict becomes the event's own)."""
    return _unvalidated(UsageEvent, values, _ALL_FIELDS)


def token_usage(**counts: Any) -> TokenUsage:
    """A TokenUsage from counts already known to be whole and >= 0; the rest take their defaults."""
    return _unvalidated(TokenUsage, {**_USAGE_DEFAULTS, **counts}, _USAGE_FIELDS)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # as shared.events' Money: a string, never an exponent
    if isinstance(value, BaseModel):
        return value.__dict__
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_usage(event: UsageEvent) -> bytes:
    """The event's JSON, by orjson from its fields: half the CPU of pydantic's serialiser on
    the hot path. Times come out as "+00:00" where pydantic writes "Z"; decoding gives the same
    event (tests/unit/test_proxy_record.py)."""
    try:
        return orjson.dumps(event.__dict__, default=_json_default)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits in metadata: pydantic takes it
        return encode(event)


def with_fields(event: UsageEvent, **changes: Any) -> UsageEvent:
    """A copy of `event` with some fields replaced (the hot path's cheap model_copy)."""
    return construct({**event.__dict__, **changes})


def usage_event(
    *,
    request_id: str,
    call_type: str,
    caller: CallerIdentity,
    attribution: Attribution,
    target: Target,
    start_time: datetime,
    end_time: datetime,
    usage: TokenUsage,
    stream: bool = False,
    completion_start_time: datetime | None = None,
    response_model: str | None = None,
    error_status: int | None = None,
    error_message: str | None = None,
    soft_budget_exceeded: bool = False,
    requester_ip_address: str | None = None,
    metadata_extra: dict | None = None,
    lease_holder: str | None = None,
) -> UsageEvent:
    metadata = dict(attribution.metadata)
    if metadata_extra:
        metadata.update(metadata_extra)
    return construct({
        "type": "usage",
        "schema_version": 1,
        "event_id": request_id,
        "request_id": request_id,
        "call_type": call_type,
        "status": "failure" if error_status is not None else "success",
        "stream": stream,
        "start_time": start_time,
        "end_time": end_time,
        "completion_start_time": completion_start_time,
        "api_key_hash": caller.api_key_hash,
        "key_alias": caller.key_alias,
        "user_id": caller.user_id,
        "team_id": caller.team_id,
        "organization_id": caller.organization_id,
        "end_user": attribution.end_user,
        "model_group": target.model_group,
        "model": target.model,
        "model_id": target.model_id,
        "custom_llm_provider": target.provider,
        "api_base": target.api_base,
        "response_model": recordable(response_model, MAX_RESPONSE_MODEL_CHARS),  # the upstream's text
        "base_model": target.base_model,
        "custom_prices": dict(target.custom_prices),
        "usage": usage,
        "request_tags": list(attribution.request_tags),
        "spend_logs_metadata": dict(attribution.spend_logs_metadata),
        "metadata": metadata,
        "error_status": error_status,
        "error_message": recordable(error_message, MAX_ERROR_MESSAGE_CHARS),
        "soft_budget_exceeded": soft_budget_exceeded,
        "requester_ip_address": requester_ip_address,
        "session_id": attribution.session_id,
        "quoted_cost": None,
        "quoted_catalog_version": None,
        "messages": None,
        "response": None,
        "lease_holder": lease_holder,
    })
