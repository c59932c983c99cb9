"""What an admin body may hold, checked before anything changes. Pure: no I/O.

Lenient like LiteLLM: every field of LiteLLM's request model for the route is accepted (schemas.py
lists them); a field LiteLLM's model does not have is ignored, as LiteLLM's pydantic models ignore
it. Only a malformed value is refused: a 400 naming the field (the wrong type, a negative budget
or limit, a duration that is not "<n>s|m|h|d"); nothing is published. Hostile input is bounded
before it is stored: the body's size, nesting depth and text (no NUL, no unpaired surrogate) by
the call path's own checks (calls/limits.py), each id and alias by length. Money arrives as exact
Decimals (the body is parsed with parse_float=Decimal)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.proxy.calls.limits import EdgeLimits, check_json_value, check_identifier
from services.proxy.errors import InvalidRequest
from shared.budget_windows import BadDuration, parse_duration

# An admin body becomes one entities.v1 record with the entity's whole state: far below the
# broker's 1 MiB, and a key's metadata is copied into every usage event of that key.
MAX_ADMIN_BODY_BYTES = 256 * 1024
LIMITS = EdgeLimits()
MAX_COUNT = 2**31 - 1  # limits are Postgres INTEGER columns


class AdminBadRequest(InvalidRequest):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message, param=param, type="invalid_request_error", code="400")


def parse_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_ADMIN_BODY_BYTES:
        raise AdminBadRequest(f"the request body is {len(raw):,} bytes; the limit for admin routes is {MAX_ADMIN_BODY_BYTES:,}")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise AdminBadRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise AdminBadRequest("the request body must be a JSON object")
    try:
        check_json_value(LIMITS, body, "body")
    except InvalidRequest as exc:
        raise AdminBadRequest(str(exc), param="body") from exc
    return body


# -- field checkers: value -> normalised value, or raise ValueError with the reason ---------------

def text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError("must be a string")


def identifier(value: Any) -> str | None:
    """An id or alias: a string of at most LIMITS.max_identifier_chars (it is recorded on calls)."""
    value = text(value)
    if value is not None and len(value) > LIMITS.max_identifier_chars:
        raise ValueError(f"is {len(value):,} characters; the limit is {LIMITS.max_identifier_chars:,}")
    return value


def str_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError("must be a list of strings")


def any_list(value: Any) -> list[Any] | None:
    if value is None or isinstance(value, list):
        return value
    raise ValueError("must be a list")


def json_object(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise ValueError("must be a JSON object")


def metadata(value: Any) -> dict[str, Any] | None:
    """An object that is copied into usage events: bounded like a call's own metadata."""
    value = json_object(value)
    if value:
        size = len(json.dumps(value, default=str))
        if size > LIMITS.max_metadata_bytes:
            raise ValueError(f"is {size:,} bytes as JSON; the limit is {LIMITS.max_metadata_bytes:,}")
    return value


def money(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError("must be a number")
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    if amount < 0:
        raise ValueError("must not be negative")
    return amount


def count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    if not 0 <= value <= MAX_COUNT:
        raise ValueError(f"must be between 0 and {MAX_COUNT}")
    return value


def iso_time(value: Any) -> str | None:
    if value is None:
        return None
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError("must be an ISO 8601 date and time") from exc
    return value


def duration(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError('must be a duration such as "30s", "30m", "30h" or "30d"')
    try:
        parse_duration(value)
    except BadDuration as exc:
        raise ValueError('must be a duration such as "30s", "30m", "30h" or "30d"') from exc
    return value.strip()


def flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


def anything(value: Any) -> Any:
    return value


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None or value in choices:
            return value
        raise ValueError(f"must be one of {list(choices)}")
    return check


def password(value: Any) -> str | None:
    value = text(value)
    if value is not None and not 8 <= len(value) <= 128:
        raise ValueError("must be 8 to 128 characters")  # LiteLLM's NewUserRequest rule
    return value


def _member(value: Any, roles: frozenset[str], default_role: str | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("input needs to be a dictionary")
    user_id, email = identifier(value.get("user_id")), identifier(value.get("user_email"))
    if user_id is None and email is None:
        raise ValueError("Either user id or user email must be provided")
    role = value.get("role", default_role)
    if role not in roles:
        raise ValueError(f"role must be one of {sorted(roles)}")
    return {"user_id": user_id, "user_email": email, "role": role}


TEAM_ROLES = frozenset({"admin", "user"})
ORG_ROLES = frozenset({"org_admin", "internal_user", "internal_user_viewer"})


def members(roles: frozenset[str], default_role: str | None) -> Callable[[Any], list[dict[str, Any]] | None]:
    """One member object or a list of them (LiteLLM accepts both), as a list."""
    def check(value: Any) -> list[dict[str, Any]] | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        return [_member(v, roles, default_role) for v in items]
    return check


def user_teams(value: Any) -> list[Any] | None:
    """/user/new `teams`: team ids, or {team_id, max_budget_in_team, user_role} objects."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("must be a list of team ids or of {team_id, max_budget_in_team, user_role} objects")
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and isinstance(item.get("team_id"), str):
            out.append({"team_id": item["team_id"], "max_budget_in_team": money(item.get("max_budget_in_team")),
                        "user_role": one_of("user", "admin")(item.get("user_role", "user"))})
        else:
            raise ValueError("must be a list of team ids or of {team_id, max_budget_in_team, user_role} objects")
    return out


Checker = Callable[[Any], Any]


def validate(route: str, body: Mapping[str, Any], fields: Mapping[str, Checker],
             required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body's fields LiteLLM's model knows, checked and normalised; only those sent."""
    for name in required:
        if body.get(name) in (None, "", []):
            raise AdminBadRequest(f"{route}: {name} is required", param=name)
    checked: dict[str, Any] = {}
    for name, value in body.items():
        check = fields.get(name)
        if check is None:
            continue  # not a field of LiteLLM's model for this route: ignored, as LiteLLM does
        try:
            checked[name] = check(value)
        except ValueError as exc:
            raise AdminBadRequest(f"{route}: {name} {exc}", param=name) from exc
    return checked


def query_text(params: Mapping[str, str], name: str) -> str | None:
    """A query parameter that names an entity: bounded like any id, NUL refused."""
    value = params.get(name)
    if value is None:
        return None
    try:
        check_identifier(LIMITS, value, name)
    except InvalidRequest as exc:
        raise AdminBadRequest(str(exc), param=name) from exc
    return value
