"""LiteLLM's internal-user and customer routes: /user/new, /user/update, /user/delete, /user/info,
/user/list; /customer/new, /customer/update, /customer/delete, /customer/info, /customer/list,
/customer/block, /customer/unblock, each also under /end_user/.

A customer (end user) is the `user` field of a call. Its budget answers as LiteLLM's nested
`litellm_budget_table`; the limits are also kept at the top of its state, where the budget guard
reads them."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from services.proxy.admin import schemas, states
from services.proxy.admin.access import Allowed
from services.proxy.admin.context import AdminContext, answer
from services.proxy.admin.keys import KeyRoutes
from services.proxy.admin.validation import AdminBadRequest
from shared.errors import NotFound
from shared.events import EntityChanged, utcnow


class UserRoutes:
    def __init__(self, ctx: AdminContext, keys: KeyRoutes) -> None:
        self.ctx = ctx
        self.keys = keys

    def _user_answer(self, user_id: str, state: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return self.ctx.with_spend("user", user_id, state, **extra)

    async def new(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.USER_NEW)
        user_id = fields.pop("user_id", None) or str(uuid.uuid4())
        if self.ctx.directory.state("user", user_id) is not None:
            raise AdminBadRequest(f"User with id={user_id} already exists.", param="user_id")
        auto_key = fields.pop("auto_create_key", None) is not False
        fields.pop("send_invite_email", None)
        fields.pop("password", None)  # Tally has no UI login: a password is not kept
        key_fields = {k: fields.pop(k) for k in ("key_alias", "duration") if k in fields}
        self.ctx.check_exists("team", fields.get("team_id"), "team_id")
        fields.pop("spend", None)
        state = states.created(states.USER_DEFAULTS, fields, utcnow())
        state["user_id"] = user_id
        changes = [EntityChanged(entity_type="user", entity_id=user_id, state=state)]
        raw = None
        if auto_key:
            key_fields.update(user_id=user_id, models=fields.get("models") or [], team_id=fields.get("team_id"))
            raw, key_change = self.keys.generated(key_fields)
            changes.append(key_change)
        await self.ctx.publish(*changes)
        # LiteLLM's NewUserResponse is its GenerateKeyResponse (the key made with the user) plus
        # the user's own fields.
        key_part: dict[str, Any] = {name: None for name in states.KEY_DEFAULTS}
        key_part.update(key=raw, token=None, token_id=None, key_name=None, duration=key_fields.get("duration"))
        if raw is not None:
            key_part.update(changes[1].state, token_id=changes[1].entity_id)
        return answer({**states.render(key_part), **self._user_answer(user_id, state)})

    def _user_id(self, fields: dict[str, Any]) -> str:
        """UpdateUserRequest names the user by user_id or by user_email."""
        if fields.get("user_id"):
            return fields.pop("user_id")
        email = fields.get("user_email")
        if not email:
            raise AdminBadRequest("Either user id or user email must be provided", param="user_id")
        found = self.ctx.with_field("user", "user_email", email)
        if not found:
            raise NotFound(f"User not found: user_email={email}", code="404")
        return found[0][0]

    async def update(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.USER_UPDATE)
        user_id = self._user_id(fields)
        old = self.ctx.existing("user", user_id, "User")
        self.ctx.check_exists("team", fields.get("team_id"), "team_id")
        for name in ("password", "spend"):
            fields.pop(name, None)
        state = states.merged(old, fields, utcnow())
        await self.ctx.publish(EntityChanged(entity_type="user", entity_id=user_id, state=state))
        return answer({"user_id": user_id, "data": self._user_answer(user_id, state)})

    async def info(self, request: web.Request) -> web.Response:
        _, params = self.ctx.query(request, ("user_id",), allowed=Allowed.ADMIN_READ)
        user_id = params.get("user_id")
        if not user_id:
            raise AdminBadRequest("/user/info: user_id is required", param="user_id")
        state = self.ctx.existing("user", user_id, "User")
        keys = [self.ctx.with_spend("key", h, s) for h, s in self.ctx.with_field("key", "user_id", user_id)]
        team_ids = {t if isinstance(t, str) else t.get("team_id") for t in state.get("teams") or []}
        teams = [states.render(s) for t, s in self.ctx.directory.states("team") if t in team_ids]
        return answer({"user_id": user_id, "user_info": self._user_answer(user_id, state), "keys": keys, "teams": teams})

    async def list(self, request: web.Request) -> web.Response:
        """LiteLLM's paged /user/list: filters user_ids (comma-separated), role, team, user_email."""
        _, params = self.ctx.query(request, ("user_ids", "role", "team", "user_email", "page", "page_size",
                                             "sort_by", "sort_order"), allowed=Allowed.ADMIN_READ)
        page, size = self.ctx.page(params, default_size=25)
        wanted = {u for u in params.get("user_ids", "").split(",") if u}
        rows = []
        for user_id, state in self.ctx.directory.states("user"):
            if wanted and user_id not in wanted:
                continue
            if "role" in params and state.get("user_role") != params["role"]:
                continue
            if "team" in params and params["team"] not in {t if isinstance(t, str) else t.get("team_id")
                                                           for t in state.get("teams") or []}:
                continue
            if "user_email" in params and params["user_email"].lower() not in str(state.get("user_email") or "").lower():
                continue
            rows.append((user_id, state))
        sort_by = params.get("sort_by") or "created_at"
        rows.sort(key=lambda r: (str(r[1].get(sort_by) or ""), r[0]), reverse=params.get("sort_order", "desc").lower() != "asc")
        chosen = rows[(page - 1) * size: page * size]
        users = [self._user_answer(u, s, key_count=len(self.ctx.with_field("key", "user_id", u))) for u, s in chosen]
        return answer({"users": users, "total": len(rows), "page": page, "page_size": size,
                       "total_pages": -(-len(rows) // size)})

    async def delete(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.USER_DELETE, ("user_ids",))
        user_ids = fields["user_ids"]
        for user_id in user_ids:
            self.ctx.existing("user", user_id, "User")
        changes = [self.ctx.deletion("key", h) for u in user_ids for h, _ in self.ctx.with_field("key", "user_id", u)]
        changes += [self.ctx.deletion("user", u) for u in user_ids]
        await self.ctx.publish(*changes)
        return answer({"deleted_users": user_ids, "deleted_keys": len(changes) - len(user_ids)})


class CustomerRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def _customer_answer(self, user_id: str, state: dict[str, Any]) -> dict[str, Any]:
        return self.ctx.with_spend("customer", user_id, state, litellm_budget_table=states.budget_table(state))

    def _fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        if fields.get("max_budget") is not None and fields.get("budget_id") is not None:
            raise AdminBadRequest("Set either 'max_budget' or 'budget_id', not both.", param="budget_id")
        fields.pop("spend", None)
        return self.ctx.linked_budget(fields)

    async def new(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.CUSTOMER_NEW, ("user_id",))
        user_id = fields.pop("user_id")
        if self.ctx.directory.state("customer", user_id) is not None:
            raise AdminBadRequest(f"Customer with user_id={user_id} already exists.", param="user_id")
        state = states.created(states.CUSTOMER_DEFAULTS, self._fields(fields), utcnow())
        state["user_id"] = user_id
        await self.ctx.publish(EntityChanged(entity_type="customer", entity_id=user_id, state=state))
        return answer(self._customer_answer(user_id, state))

    async def update(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.CUSTOMER_UPDATE, ("user_id",))
        user_id = fields.pop("user_id")
        old = self.ctx.existing("customer", user_id, "Customer")
        state = states.merged(old, self._fields(fields), utcnow())
        await self.ctx.publish(EntityChanged(entity_type="customer", entity_id=user_id, state=state))
        return answer(self._customer_answer(user_id, state))

    async def info(self, request: web.Request) -> web.Response:
        _, params = self.ctx.query(request, ("end_user_id",), allowed=Allowed.ADMIN_READ)
        user_id = params.get("end_user_id")
        if not user_id:
            raise AdminBadRequest("/customer/info: end_user_id is required", param="end_user_id")
        return answer(self._customer_answer(user_id, self.ctx.existing("customer", user_id, "Customer")))

    async def list(self, request: web.Request) -> web.Response:
        self.ctx.access.require(request, Allowed.ADMIN_READ)
        return answer([self._customer_answer(u, s) for u, s in sorted(self.ctx.directory.states("customer"))])

    async def delete(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.CUSTOMER_DELETE, ("user_ids",))
        user_ids = fields["user_ids"]
        for user_id in user_ids:
            self.ctx.existing("customer", user_id, "Customer")
        await self.ctx.publish(*[self.ctx.deletion("customer", u) for u in user_ids])
        return answer({"deleted_customers": user_ids})

    async def _set_blocked(self, request: web.Request, blocked: bool) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.CUSTOMER_DELETE, ("user_ids",))
        now = utcnow()
        changes = [EntityChanged(entity_type="customer", entity_id=u, state=states.merged(
            self.ctx.existing("customer", u, "Customer"), {"blocked": blocked}, now)) for u in fields["user_ids"]]
        await self.ctx.publish(*changes)
        return answer({"blocked_users" if blocked else "unblocked_users": fields["user_ids"]})

    async def block(self, request: web.Request) -> web.Response:
        return await self._set_blocked(request, True)

    async def unblock(self, request: web.Request) -> web.Response:
        return await self._set_blocked(request, False)
