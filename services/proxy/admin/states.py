"""The full new state of an entity after an admin call, shaped like its LiteLLM_* row (the ledger
upserts the columns by these names). Pure: times and ids are handed in.

In the event, money travels as exact decimal strings and times as ISO 8601 text; `render` turns a
state back into a response body with money as JSON numbers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from shared.keys import abbreviate

MONEY_FIELDS = frozenset({"max_budget", "soft_budget", "spend", "max_budget_in_team"})

KEY_DEFAULTS: dict[str, Any] = {
    "key_alias": None, "expires": None, "models": [], "user_id": None, "team_id": None, "permissions": {},
    "metadata": {}, "max_parallel_requests": None, "tpm_limit": None, "rpm_limit": None, "max_budget": None,
    "soft_budget": None, "budget_duration": None, "blocked": False,
}
TEAM_DEFAULTS: dict[str, Any] = {
    "team_alias": None, "organization_id": None, "admins": [], "members": [], "members_with_roles": [],
    "metadata": {}, "models": [], "max_budget": None, "soft_budget": None, "max_parallel_requests": None,
    "tpm_limit": None, "rpm_limit": None, "budget_duration": None, "blocked": False,
}
USER_DEFAULTS: dict[str, Any] = {
    "user_alias": None, "team_id": None, "teams": [], "user_role": "internal_user", "user_email": None,
    "models": [], "metadata": {}, "max_budget": None, "soft_budget": None, "max_parallel_requests": None,
    "tpm_limit": None, "rpm_limit": None, "budget_duration": None,
}
CUSTOMER_DEFAULTS: dict[str, Any] = {
    "alias": None, "allowed_model_region": None, "default_model": None, "max_budget": None,
    "budget_duration": None, "blocked": False, "metadata": {},
}


def _wire(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def merged(old: Mapping[str, Any], fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """`old` with the given fields replaced (money and times in their wire form)."""
    state = dict(old)
    for name, value in fields.items():
        state[name] = _wire(value)
    state["updated_at"] = now.isoformat()
    return state


def created(defaults: Mapping[str, Any], fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    state = merged(defaults, fields, now)
    state["created_at"] = now.isoformat()
    return state


def key_fields(fields: Mapping[str, Any], now: datetime, old_metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A key's request fields as columns: `duration` becomes `expires`, `tags` go into metadata."""
    from shared.budget_windows import parse_duration

    out = {k: v for k, v in fields.items() if k not in ("duration", "tags", "key")}
    if "duration" in fields:
        span = parse_duration(fields["duration"])
        out["expires"] = (now + span) if span is not None else None
    if "tags" in fields:
        metadata = dict(out.get("metadata") if out.get("metadata") is not None else (old_metadata or {}))
        metadata["tags"] = fields["tags"] or []
        out["metadata"] = metadata
    for name in ("models", "permissions", "metadata"):
        if name in out and out[name] is None:
            out[name] = [] if name == "models" else {}
    return out


def new_key_state(raw_key: str, api_key_hash: str, fields: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    state = created(KEY_DEFAULTS, key_fields(fields, now), now)
    state["token"] = api_key_hash
    state["key_name"] = abbreviate(raw_key)
    return state


def render(state: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A state as a response object: money fields back to Decimals (JSON numbers on the way out)."""
    out = {k: (Decimal(v) if k in MONEY_FIELDS and isinstance(v, str) else v) for k, v in state.items()}
    out.update(extra)
    return out


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(data: Any) -> bytes:
    """JSON with money as exact numbers (never through a float)."""
    return orjson.dumps(data, default=_default)
