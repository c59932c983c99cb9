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

MONEY_FIELDS = frozenset({"max_budget", "soft_budget", "spend", "max_budget_in_team", "max_budget_in_organization",
                          "team_member_budget", "temp_budget_increase"})

# Every field of LiteLLM's response models (GenerateKeyResponse, LiteLLM_TeamTable, NewUserResponse,
# LiteLLM_EndUserTable, LiteLLM_OrganizationTable, LiteLLM_BudgetTable) with LiteLLM's defaults, so a
# response carries them all whether or not the request set them.
KEY_DEFAULTS: dict[str, Any] = {
    "key_alias": None, "expires": None, "models": [], "user_id": None, "team_id": None, "agent_id": None,
    "organization_id": None, "project_id": None, "budget_id": None, "permissions": {}, "metadata": {},
    "max_parallel_requests": None, "tpm_limit": None, "rpm_limit": None, "max_budget": None, "soft_budget": None,
    "budget_duration": None, "blocked": False, "allowed_cache_controls": [], "config": {}, "model_max_budget": {},
    "model_rpm_limit": None, "model_tpm_limit": None, "guardrails": None, "policies": None, "prompts": None,
    "aliases": {}, "object_permission": None, "tags": None, "enforced_params": None, "allowed_routes": [],
    "allowed_passthrough_routes": None, "allowed_vector_store_indexes": None, "rpm_limit_type": None,
    "tpm_limit_type": None, "router_settings": None, "access_group_ids": None, "key_type": "default",
    "auto_rotate": False, "rotation_interval": None, "litellm_budget_table": None, "created_by": None,
    "updated_by": None,
}
TEAM_DEFAULTS: dict[str, Any] = {
    "team_alias": None, "organization_id": None, "admins": [], "members": [], "members_with_roles": [],
    "team_member_permissions": None, "metadata": {}, "models": [], "max_budget": None, "soft_budget": None,
    "max_parallel_requests": None, "tpm_limit": None, "rpm_limit": None, "budget_duration": None, "blocked": False,
    "router_settings": None, "access_group_ids": None, "model_aliases": None, "tags": None, "guardrails": None,
    "policies": None, "prompts": None, "object_permission": None, "allowed_passthrough_routes": None,
    "secret_manager_settings": None, "model_rpm_limit": None, "model_tpm_limit": None, "rpm_limit_type": None,
    "tpm_limit_type": None, "team_member_budget": None, "team_member_rpm_limit": None,
    "team_member_tpm_limit": None, "team_member_key_duration": None, "team_member_budget_duration": None,
    "allowed_vector_store_indexes": None, "enforced_batch_output_expires_after": None,
    "enforced_file_expires_after": None, "model_id": None, "litellm_model_table": None,
    "object_permission_id": None,
}
USER_DEFAULTS: dict[str, Any] = {
    "user_alias": None, "team_id": None, "teams": [], "user_role": "internal_user", "user_email": None,
    "models": [], "metadata": {}, "max_budget": None, "soft_budget": None, "max_parallel_requests": None,
    "tpm_limit": None, "rpm_limit": None, "budget_duration": None, "model_max_budget": {}, "model_spend": {},
    "sso_user_id": None, "organizations": None, "organization_memberships": [], "key_alias": None,
    "agent_id": None, "allowed_cache_controls": [], "config": {}, "permissions": {}, "model_rpm_limit": None,
    "model_tpm_limit": None, "guardrails": None, "policies": None, "prompts": None, "blocked": None,
    "aliases": {}, "object_permission": None,
}
CUSTOMER_DEFAULTS: dict[str, Any] = {
    "alias": None, "allowed_model_region": None, "default_model": None, "budget_id": None, "max_budget": None,
    "soft_budget": None, "max_parallel_requests": None, "tpm_limit": None, "rpm_limit": None,
    "budget_duration": None, "model_max_budget": None, "blocked": False, "metadata": {},
    "object_permission": None, "object_permission_id": None,
}
ORGANIZATION_DEFAULTS: dict[str, Any] = {
    "organization_alias": None, "budget_id": None, "metadata": {}, "models": [], "model_spend": {},
    "max_budget": None, "soft_budget": None, "max_parallel_requests": None, "tpm_limit": None, "rpm_limit": None,
    "budget_duration": None, "model_max_budget": None, "model_rpm_limit": None, "model_tpm_limit": None,
    "object_permission": None, "object_permission_id": None, "members": [], "created_by": None,
    "updated_by": None,
}
BUDGET_DEFAULTS: dict[str, Any] = {
    "max_budget": None, "soft_budget": None, "max_parallel_requests": None, "tpm_limit": None, "rpm_limit": None,
    "budget_duration": None, "model_max_budget": None, "budget_reset_at": None, "created_by": None,
    "updated_by": None,
}
# LiteLLM_BudgetTable's fields: what a budget_id links, and a customer's or organisation's
# `litellm_budget_table`.
BUDGET_TABLE_FIELDS = ("budget_id", "soft_budget", "max_budget", "max_parallel_requests", "tpm_limit",
                       "rpm_limit", "model_max_budget", "budget_duration")


# Fields holding objects whose money fields are Tally's own (not a caller's free-form metadata).
NESTED_WITH_MONEY = frozenset({"litellm_budget_table", "members_with_roles", "members", "teams", "team_memberships"})


def _wire(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
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
    """A key's request fields as columns: `duration` becomes `expires`, `tags` also go into
    metadata (where LiteLLM reads a key's tags)."""
    from shared.budget_windows import parse_duration

    out = {k: v for k, v in fields.items() if k not in ("duration", "key")}
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


def _money_back(name: str, value: Any) -> Any:
    if name in MONEY_FIELDS and isinstance(value, str):
        return Decimal(value)
    if name in NESTED_WITH_MONEY:
        if isinstance(value, dict):
            return {k: _money_back(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [{k: _money_back(k, v) for k, v in item.items()} if isinstance(item, dict) else item
                    for item in value]
    return value


def render(state: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """A state as a response object: money fields back to Decimals (JSON numbers on the way out)."""
    out = {k: _money_back(k, v) for k, v in state.items()}
    out.update(extra)
    return out


def budget_table(state: Mapping[str, Any]) -> dict[str, Any]:
    """The LiteLLM_BudgetTable part of a state (a customer's or organisation's budget)."""
    return {name: _money_back(name, state.get(name)) for name in BUDGET_TABLE_FIELDS}


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(data: Any) -> bytes:
    """JSON with money as exact numbers (never through a float)."""
    return orjson.dumps(data, default=_default)
