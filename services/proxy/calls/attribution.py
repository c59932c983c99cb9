"""Who a call is for and how it is labelled, read from the request body and headers; and the body
with the proxy's own fields taken out before it goes upstream. Pure: no I/O.

The openai SDK's `extra_body={...}` merges into the top-level JSON, so `metadata`, `mock_response`
and friends arrive the same way whichever form the caller used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.proxy.auth.keys import CallerIdentity
from services.proxy.errors import InvalidRequest
from services.proxy.routing.router import CHAT, TEXT

SPEND_LOGS_METADATA_HEADER = "x-litellm-spend-logs-metadata"
TAGS_HEADER = "x-litellm-tags"
SESSION_HEADER = "x-litellm-session-id"

# Fields the proxy consumes itself and never sends upstream. Unknown fields (e.g. a provider's own
# parameters, or the fake upstream's `x_fake`) are forwarded untouched.
PROXY_ONLY_FIELDS = frozenset({
    "metadata", "litellm_metadata", "mock_response", "mock_tool_calls", "mock_timeout", "tags",
    "litellm_session_id", "litellm_trace_id", "proxy_server_request", "num_retries", "fallbacks", "timeout",
    "context_window_fallback_dict", "caching", "cache", "no-log", "api_key", "api_base", "api_version",
    "base_model", "input_cost_per_token", "output_cost_per_token", "spend_logs_metadata",
})
TEAM_ALIAS = "user_api_key_team_alias"  # the spend log's name; set by the proxy, never by the caller
_NOT_THE_CALLERS = frozenset({"tags", "spend_logs_metadata", TEAM_ALIAS})
STREAMABLE = frozenset({CHAT, TEXT})
_NOT_FOR_PLAIN_CALLS = PROXY_ONLY_FIELDS | {"stream", "stream_options"}


@dataclass(frozen=True, slots=True)
class Attribution:
    end_user: str | None = None
    request_tags: tuple[str, ...] = ()
    spend_logs_metadata: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)  # the request's metadata, minus the above
    session_id: str | None = None
    mock_response: str | None = None


def _tags(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidRequest(f"{where} must be a list of strings", param=where)
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be a JSON object", param=where)
    return value


def attribute(body: dict[str, Any], headers: Mapping[str, str], caller: CallerIdentity) -> Attribution:
    """Read the attribution out of `body` (not modified) and `headers`. Runs on every call: the
    checks of `_object` and `_tags` are skipped for the fields a call does not carry."""
    get = body.get
    user = get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("user must be a string", param="user")
    metadata = get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be a JSON object", param="metadata")
    litellm_metadata = get("litellm_metadata")
    if litellm_metadata is not None:
        litellm_metadata = _object(litellm_metadata, "litellm_metadata")
        if litellm_metadata:
            metadata = {**litellm_metadata, **metadata}

    tags: list[str] = []
    meta_tags, body_tags = metadata.get("tags"), get("tags")
    if meta_tags is not None:
        tags.extend(_tags(meta_tags, "metadata.tags"))
    if body_tags is not None:
        tags.extend(_tags(body_tags, "tags"))
    header_tags = headers.get(TAGS_HEADER)
    if header_tags:
        tags.extend(t.strip() for t in header_tags.split(",") if t.strip())
    tags.extend(caller.tags)

    spend_meta: dict[str, Any] = dict(caller.spend_logs_metadata)
    meta_spend = metadata.get("spend_logs_metadata")
    if meta_spend is not None:
        spend_meta.update(_object(meta_spend, "metadata.spend_logs_metadata"))
    raw_header = headers.get(SPEND_LOGS_METADATA_HEADER)
    if raw_header:
        try:
            from_header = orjson.loads(raw_header)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"{SPEND_LOGS_METADATA_HEADER} must be a JSON object", param=SPEND_LOGS_METADATA_HEADER) from exc
        spend_meta.update(_object(from_header, SPEND_LOGS_METADATA_HEADER))

    session = metadata.get("session_id") or get("litellm_session_id") or headers.get(SESSION_HEADER)
    mock = get("mock_response")
    if mock is not None and not isinstance(mock, str):
        raise InvalidRequest("mock_response must be a string", param="mock_response")
    rest = {k: v for k, v in metadata.items() if k not in _NOT_THE_CALLERS} if metadata else {}
    if caller.team_alias is not None:  # as LiteLLM adds its user_api_key_* fields to a request's metadata
        rest[TEAM_ALIAS] = caller.team_alias
    return Attribution(
        end_user=user or None,
        request_tags=tuple(dict.fromkeys(tags)),
        spend_logs_metadata=spend_meta,
        metadata=rest,
        session_id=str(session) if session else None,
        mock_response=mock,
    )


def upstream_body(body: dict[str, Any], call_type: str = CHAT) -> dict[str, Any]:
    """The body minus the proxy's own fields (a new dict only when something is removed). Embeddings
    and images have no stream: `stream` and `stream_options` are dropped (as LiteLLM ignores them),
    so such a call is always relayed, and priced, as a plain call."""
    dropped = PROXY_ONLY_FIELDS if call_type in STREAMABLE else _NOT_FOR_PLAIN_CALLS
    if dropped.isdisjoint(body):
        return body
    return {k: v for k, v in body.items() if k not in dropped}
