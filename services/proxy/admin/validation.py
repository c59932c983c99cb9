"""What each admin route accepts, checked before anything changes. Pure: no I/O.

Fields and their names are LiteLLM's. An unknown field, a value of the wrong type, a negative
budget or limit, or a duration that is not "<n>s|m|h|d" is a 400 naming the field; nothing is
published. Money arrives as exact Decimals (the body is parsed with parse_float=Decimal)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from shared.budget_windows import BadDuration, parse_duration
from services.proxy.errors import InvalidRequest


class AdminBadRequest(InvalidRequest):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message, param=param, type="invalid_request_error", code="400")


def parse_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminBadRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise AdminBadRequest("the request body must be a JSON object")
    return body


# -- field checkers: value -> normalised value, or raise ValueError with the reason ---------------

def _str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError("must be a string")


def _str_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError("must be a list of strings")


def _object(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise ValueError("must be a JSON object")


def _money(value: Any) -> Decimal | None:
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


def _count(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    if value < 0:
        raise ValueError("must not be negative")
    if value > _MAX_COUNT:
        raise ValueError(f"must be at most {_MAX_COUNT}")  # a 64-bit integer, as JSON and PostgreSQL carry it
    return value


_MAX_COUNT = 2**63 - 1


def _duration(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError('must be a duration such as "30s", "30m", "30h" or "30d"')
    try:
        parse_duration(value)
    except BadDuration as exc:
        raise ValueError('must be a duration such as "30s", "30m", "30h" or "30d"') from exc
    return value.strip()


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


ROLES = frozenset({"admin", "user"})


def _member(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be an object with user_id and/or user_email, and role")
    unknown = set(value) - {"user_id", "user_email", "role"}
    if unknown:
        raise ValueError(f"has unknown fields {sorted(unknown)}")
    if not (isinstance(value.get("user_id"), str) or isinstance(value.get("user_email"), str)):
        raise ValueError("needs user_id or user_email")
    role = value.get("role", "user")
    if role not in ROLES:
        raise ValueError('role must be "admin" or "user"')
    return {"user_id": value.get("user_id"), "user_email": value.get("user_email"), "role": role}


def _members(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [_member(v) for v in items]


USER_ROLES = frozenset({"proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer", "team", "customer"})


def _user_role(value: Any) -> str | None:
    if value is None:
        return None
    if value not in USER_ROLES:
        raise ValueError(f"must be one of {sorted(USER_ROLES)}")
    return value


def _region(value: Any) -> str | None:
    if value is None or value in ("eu", "us"):
        return value
    raise ValueError('must be "eu" or "us"')


Checker = Callable[[Any], Any]

_KEY_FIELDS: dict[str, Checker] = {
    "key_alias": _str, "duration": _duration, "models": _str_list, "max_budget": _money, "soft_budget": _money,
    "budget_duration": _duration, "user_id": _str, "team_id": _str, "metadata": _object, "permissions": _object,
    "tpm_limit": _count, "rpm_limit": _count, "max_parallel_requests": _count, "blocked": _bool, "tags": _str_list,
}
_BUDGET_FIELDS: dict[str, Checker] = {
    "max_budget": _money, "soft_budget": _money, "budget_duration": _duration, "tpm_limit": _count,
    "rpm_limit": _count, "max_parallel_requests": _count, "models": _str_list, "metadata": _object,
}
_TEAM_FIELDS: dict[str, Checker] = {
    **_BUDGET_FIELDS, "team_id": _str, "team_alias": _str, "members_with_roles": _members, "blocked": _bool,
    "organization_id": _str,
}
_USER_FIELDS: dict[str, Checker] = {
    **_BUDGET_FIELDS, "user_id": _str, "user_alias": _str, "user_email": _str, "user_role": _user_role,
    "teams": _str_list, "team_id": _str,
}
_CUSTOMER_FIELDS: dict[str, Checker] = {
    "user_id": _str, "alias": _str, "blocked": _bool, "max_budget": _money, "budget_duration": _duration,
    "allowed_model_region": _region, "default_model": _str, "metadata": _object,
}

SCHEMAS: dict[str, tuple[dict[str, Checker], frozenset[str]]] = {
    "/key/generate": ({**_KEY_FIELDS, "key": _str}, frozenset()),
    "/key/update": ({**_KEY_FIELDS, "key": _str}, frozenset({"key"})),
    "/key/delete": ({"keys": _str_list, "key_aliases": _str_list}, frozenset()),
    "/team/new": (_TEAM_FIELDS, frozenset()),
    "/team/update": (_TEAM_FIELDS, frozenset({"team_id"})),
    "/team/delete": ({"team_ids": _str_list}, frozenset({"team_ids"})),
    "/team/member_add": ({"team_id": _str, "member": _members, "max_budget_in_team": _money},
                         frozenset({"team_id", "member"})),
    "/user/new": ({**_USER_FIELDS, "auto_create_key": _bool, "send_invite_email": _bool, "key_alias": _str,
                   "duration": _duration}, frozenset()),
    "/user/update": (_USER_FIELDS, frozenset({"user_id"})),
    "/user/delete": ({"user_ids": _str_list}, frozenset({"user_ids"})),
    "/customer/new": (_CUSTOMER_FIELDS, frozenset({"user_id"})),
    "/customer/update": (_CUSTOMER_FIELDS, frozenset({"user_id"})),
    "/customer/delete": ({"user_ids": _str_list}, frozenset({"user_ids"})),
}


def validate(route: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The body's fields, checked and normalised; only the fields the caller sent."""
    fields, required = SCHEMAS[route]
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise AdminBadRequest(f"{route}: unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(fields))}",
                              param=unknown[0])
    for name in sorted(required):
        if body.get(name) in (None, "", []):
            raise AdminBadRequest(f"{route}: {name} is required", param=name)
    checked: dict[str, Any] = {}
    for name, value in body.items():
        try:
            checked[name] = fields[name](value)
        except ValueError as exc:
            raise AdminBadRequest(f"{route}: {name} {exc}", param=name) from exc
    return checked
