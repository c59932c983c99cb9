"""What every admin route group shares: the caller check, the body and query, the directory's
lookups, spend for a response, and publishing. Route groups: keys.py, teams.py, people.py (users
and customers), organizations.py, budgets.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from services.proxy.admin import states
from services.proxy.admin.access import Access, Allowed, Caller
from services.proxy.admin.publisher import EntityPublisher
from services.proxy.admin.validation import AdminBadRequest, Checker, parse_body, query_text, validate
from services.proxy.budget.entities import EntityDirectory
from services.proxy.budget.guard import BudgetGuard
from shared.errors import NotFound
from shared.events import EntityChanged
from shared.keys import hash_key

_HASH = re.compile(r"^[0-9a-f]{64}$")


def is_member(member: Mapping[str, Any], user_id: str | None, email: str | None) -> bool:
    return (user_id is not None and member.get("user_id") == user_id) or (
        email is not None and member.get("user_email") == email)


def answer(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=states.dumps(data), status=status, content_type="application/json")


MAX_PAGE = 10**9  # page numbers of the list routes: larger ones are a 400, not an overflow


class AdminContext:
    def __init__(self, master_key: str | None, directory: EntityDirectory, guard: BudgetGuard,
                 publisher: EntityPublisher) -> None:
        self.access = Access(master_key, directory)
        self.directory = directory
        self.guard = guard
        self.publisher = publisher

    # -- the request -----------------------------------------------------------------------------

    async def body(self, request: web.Request, fields: Mapping[str, Checker], required: tuple[str, ...] = (),
                   allowed: Allowed = Allowed.ADMIN) -> tuple[Caller, dict[str, Any]]:
        caller = self.access.require(request, allowed)
        return caller, validate(request.path, parse_body(await request.read()), fields, required)

    def query(self, request: web.Request, names: tuple[str, ...],
              allowed: Allowed = Allowed.ADMIN) -> tuple[Caller, dict[str, str]]:
        """The named query parameters, bounded; any other parameter is ignored (as LiteLLM does)."""
        caller = self.access.require(request, allowed)
        return caller, {n: v for n in names if (v := query_text(request.query, n)) is not None}

    @staticmethod
    def page(params: Mapping[str, str], default_size: int = 10, max_size: int = 100) -> tuple[int, int]:
        try:
            page, size = int(params.get("page", "1")), int(params.get("page_size", params.get("size", str(default_size))))
        except ValueError as exc:
            raise AdminBadRequest("page and page_size must be whole numbers", param="page") from exc
        if not 1 <= page <= MAX_PAGE or not 1 <= size <= max_size:
            raise AdminBadRequest(f"page must be between 1 and {MAX_PAGE} and page_size between 1 and {max_size}", param="page_size")
        return page, size

    # -- the directory -----------------------------------------------------------------------------

    def with_spend(self, kind: str, entity_id: str, state: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        spend, reset_at = self.guard.spend_of(kind, entity_id)
        return states.render(state, spend=spend, budget_reset_at=reset_at, **extra)

    def key_hash(self, key: str) -> str:
        """A key given raw ("sk-...") or as its hash, to its hash; 404 when unknown."""
        for candidate in (hash_key(key), key if _HASH.match(key) else None):
            if candidate is not None and self.directory.state("key", candidate) is not None:
                return candidate
        raise NotFound(f"Key not found: {key[:6]}...", code="404")

    def existing(self, kind: str, entity_id: str, label: str) -> dict[str, Any]:
        state = self.directory.state(kind, entity_id)
        if state is None:
            raise NotFound(f"{label} not found: {entity_id}", code="404")
        return state

    def check_alias(self, alias: Any, own_hash: str | None = None) -> None:
        if alias is None:
            return
        holder = self.directory.key_by_alias(alias)
        if holder is not None and holder != own_hash:
            raise AdminBadRequest(f"Key with alias '{alias}' already exists.", param="key_alias")

    def check_exists(self, kind: str, entity_id: Any, param: str) -> None:
        if entity_id is not None and self.directory.state(kind, entity_id) is None:
            label = {"team": "Team", "organization": "Organization", "budget": "Budget"}[kind]
            raise AdminBadRequest(f"{label} doesn't exist in the database: {param}={entity_id}", param=param)

    def with_field(self, kind: str, field: str, value: str) -> list[tuple[str, dict[str, Any]]]:
        return [(i, s) for i, s in self.directory.states(kind) if s.get(field) == value]

    def deletion(self, kind: str, entity_id: str) -> EntityChanged:
        return EntityChanged(entity_type=kind, entity_id=entity_id, deleted=True,
                             state=dict(self.directory.state(kind, entity_id) or {}))

    def linked_budget(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A request naming a budget_id gets that budget's limits, which it then enforces (LiteLLM
        links the budget row); limits given in the same request win."""
        budget_id = fields.get("budget_id")
        if budget_id is None:
            return fields
        budget = self.directory.state("budget", budget_id)
        if budget is None:
            raise AdminBadRequest(f"Budget doesn't exist in the database: budget_id={budget_id}", param="budget_id")
        limits = {k: v for k, v in states.budget_table(budget).items() if k != "budget_id" and v is not None}
        return {**limits, **fields}

    def member_of(self, kind: str, fields: dict[str, Any], members_field: str,
                  label: str) -> tuple[str, dict[str, Any], str | None, str | None]:
        """The team or organisation a member request names (by `<kind>_id`), and the member's
        user_id / user_email: 400 without either, 404 when not a member."""
        user_id, email = fields.get("user_id"), fields.get("user_email")
        if user_id is None and email is None:
            raise AdminBadRequest("Either user id or user email must be provided", param="user_id")
        entity_id = fields[f"{kind}_id"]
        state = self.existing(kind, entity_id, label)
        if not any(is_member(m, user_id, email) for m in state.get(members_field) or []):
            raise NotFound(f"User={user_id or email} is not a member of {kind}={entity_id}", code="404")
        return entity_id, state, user_id, email

    def user_joined(self, member: Mapping[str, Any], field: str, entity_id: str, now: datetime) -> EntityChanged:
        """The member's internal user (made when new, as LiteLLM does) with `entity_id` added to
        its `teams` or `organizations`."""
        user = self.directory.state("user", member["user_id"])
        if user is None:
            user = states.created(states.USER_DEFAULTS, {"user_email": member["user_email"]}, now)
            user["user_id"] = member["user_id"]
        joined = list(user.get(field) or [])
        if entity_id not in joined:
            joined.append(entity_id)
        return EntityChanged(entity_type="user", entity_id=member["user_id"], state=states.merged(user, {field: joined}, now))

    def user_left(self, user_id: str | None, field: str, entity_id: str, now: datetime) -> EntityChanged | None:
        """The internal user with `entity_id` taken out of its `teams` or `organizations` (None: no such user)."""
        user = self.directory.state("user", user_id or "")
        if user is None or entity_id not in (user.get(field) or []):
            return None
        left = [e for e in user.get(field) or [] if e != entity_id]
        return EntityChanged(entity_type="user", entity_id=str(user_id), state=states.merged(user, {field: left}, now))

    async def publish(self, *changes: EntityChanged) -> None:
        await self.publisher.publish(list(changes))
