"""LiteLLM's key, team, user and customer management routes. Master key only: no key or an unknown
key, or a blocked or expired one, is a 401, any other key a 403. Each handler validates (400, nothing changed), builds the full
new state, publishes it (EntityChanged, acks=all) and answers in LiteLLM's shape. Only a key's
SHA-256 hash is stored or logged; the raw key is in the /key/generate (and /user/new) answer and
nowhere else."""

from __future__ import annotations

import hmac
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.proxy.admin import states
from services.proxy.admin.publisher import EntityPublisher
from services.proxy.admin.validation import AdminBadRequest, parse_body, validate
from services.proxy.auth.keys import CallerIdentity, raw_key_from_headers, refusal
from services.proxy.budget.entities import EntityDirectory
from services.proxy.budget.guard import BudgetGuard
from services.proxy.errors import AuthError, PermissionDenied
from shared.errors import NotFound
from shared.events import EntityChanged, utcnow
from shared.keys import generate_key, hash_key

_HASH = re.compile(r"^[0-9a-f]{64}$")
Handler = Callable[[web.Request], Awaitable[web.Response]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=states.dumps(data), status=status, content_type="application/json")


class Admin:
    def __init__(self, master_key: str | None, directory: EntityDirectory, guard: BudgetGuard,
                 publisher: EntityPublisher) -> None:
        self._master = master_key.encode() if master_key else None
        self.directory = directory
        self.guard = guard
        self.publisher = publisher

    # -- plumbing ------------------------------------------------------------------------------

    def require_master(self, request: web.Request) -> None:
        raw = raw_key_from_headers(request.headers)
        if raw is None:
            raise AuthError("No api key passed in. Send it as 'Authorization: Bearer <key>' or an 'api-key' header.")
        if self._master is not None and hmac.compare_digest(raw.encode(), self._master):
            return
        hashed = hash_key(raw)
        state = self.directory.state("key", hashed)
        if state is None:
            raise AuthError("Invalid proxy server token passed. Unable to find token in cache.")
        refused = refusal(CallerIdentity.from_state(hashed, state))
        if refused is not None:  # a key that may not be used at all is a 401, as on every route
            raise AuthError(refused)
        raise PermissionDenied(f"Only the proxy admin (master key) may call {request.path}")

    async def body(self, request: web.Request, route: str) -> dict[str, Any]:
        self.require_master(request)
        return validate(route, parse_body(await request.read()))

    def query(self, request: web.Request, allowed: set[str]) -> dict[str, str]:
        self.require_master(request)
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            raise AdminBadRequest(f"{request.path}: unknown query parameter(s) {', '.join(unknown)}", param=unknown[0])
        return {k: v for k, v in request.query.items()}

    def with_spend(self, kind: str, entity_id: str, state: dict[str, Any], **extra: Any) -> dict[str, Any]:
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

    def check_team(self, team_id: Any) -> None:
        if team_id is not None and self.directory.state("team", team_id) is None:
            raise AdminBadRequest(f"Team doesn't exist in the database: team_id={team_id}", param="team_id")

    def keys_of(self, field: str, value: str) -> list[tuple[str, dict[str, Any]]]:
        return [(h, s) for h, s in self.directory.states("key") if s.get(field) == value]

    # -- keys ----------------------------------------------------------------------------------

    def _generate(self, fields: dict[str, Any]) -> tuple[str, EntityChanged]:
        raw = fields.get("key") or generate_key()
        if not raw.startswith("sk-"):
            raise AdminBadRequest("a custom key must start with 'sk-'", param="key")
        api_key_hash = hash_key(raw)
        if self.directory.state("key", api_key_hash) is not None:
            raise AdminBadRequest("this key already exists", param="key")
        self.check_alias(fields.get("key_alias"))
        self.check_team(fields.get("team_id"))
        state = states.new_key_state(raw, api_key_hash, fields, utcnow())
        return raw, EntityChanged(entity_type="key", entity_id=api_key_hash, state=state)

    async def key_generate(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/key/generate")
        raw, change = self._generate(fields)
        await self.publisher.publish([change])
        body = self.with_spend("key", change.entity_id, change.state, key=raw, token_id=change.entity_id,
                               duration=fields.get("duration"))
        return _json(body)

    async def key_update(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/key/update")
        given = fields.pop("key")
        api_key_hash = self.key_hash(given)
        old = self.directory.state("key", api_key_hash) or {}
        if "key_alias" in fields:
            self.check_alias(fields["key_alias"], api_key_hash)
        if "team_id" in fields:
            self.check_team(fields["team_id"])
        now = utcnow()
        state = states.merged(old, states.key_fields(fields, now, old.get("metadata")), now)
        await self.publisher.publish([EntityChanged(entity_type="key", entity_id=api_key_hash, state=state)])
        return _json(self.with_spend("key", api_key_hash, {k: v for k, v in state.items() if k != "token"}, key=given))

    async def key_delete(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/key/delete")
        given = list(fields.get("keys") or [])
        hashes = [self.key_hash(k) for k in given]
        for alias in fields.get("key_aliases") or []:
            holder = self.directory.key_by_alias(alias)
            if holder is None:
                raise NotFound(f"Key not found: alias {alias}", code="404")
            hashes.append(holder)
            given.append(alias)
        if not hashes:
            raise AdminBadRequest("/key/delete: give keys or key_aliases", param="keys")
        await self.publisher.publish([self._deletion("key", h) for h in dict.fromkeys(hashes)])
        return _json({"deleted_keys": given})

    async def key_info(self, request: web.Request) -> web.Response:
        params = self.query(request, {"key"})
        given = params.get("key")
        if not given:
            raise AdminBadRequest("/key/info: key is required", param="key")
        api_key_hash = self.key_hash(given)
        state = {k: v for k, v in self.existing("key", api_key_hash, "Key").items() if k != "token"}
        return _json({"key": given, "info": self.with_spend("key", api_key_hash, state)})

    async def key_list(self, request: web.Request) -> web.Response:
        params = self.query(request, {"page", "size", "user_id", "team_id", "key_alias", "return_full_object"})
        try:
            page, size = int(params.get("page", "1")), int(params.get("size", "10"))
        except ValueError as exc:
            raise AdminBadRequest("page and size must be whole numbers", param="page") from exc
        if page < 1 or not 1 <= size <= 100:
            raise AdminBadRequest("page must be >= 1 and size between 1 and 100", param="size")
        rows = [(h, s) for h, s in self.directory.states("key")
                if all(s.get(f) == params[f] for f in ("user_id", "team_id", "key_alias") if f in params)]
        rows.sort(key=lambda row: (row[1].get("created_at") or "", row[0]), reverse=True)
        chosen = rows[(page - 1) * size: page * size]
        full = params.get("return_full_object", "false").lower() == "true"
        keys = [self.with_spend("key", h, s) for h, s in chosen] if full else [h for h, _ in chosen]
        return _json({"keys": keys, "total_count": len(rows), "current_page": page,
                      "total_pages": -(-len(rows) // size)})

    # -- teams ---------------------------------------------------------------------------------

    async def team_new(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/team/new")
        team_id = fields.pop("team_id", None) or str(uuid.uuid4())
        if self.directory.state("team", team_id) is not None:
            raise AdminBadRequest(f"Team id = {team_id} already exists. Please use a different team id.", param="team_id")
        fields = self._team_members(fields)
        state = states.created(states.TEAM_DEFAULTS, fields, utcnow())
        state["team_id"] = team_id
        await self.publisher.publish([EntityChanged(entity_type="team", entity_id=team_id, state=state)])
        return _json(self.with_spend("team", team_id, state))

    @staticmethod
    def _team_members(fields: dict[str, Any]) -> dict[str, Any]:
        if fields.get("members_with_roles") is not None:
            members = fields["members_with_roles"]
            fields["admins"] = [m["user_id"] for m in members if m["role"] == "admin" and m["user_id"]]
            fields["members"] = [m["user_id"] for m in members if m["role"] == "user" and m["user_id"]]
        return fields

    async def team_update(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/team/update")
        team_id = fields.pop("team_id")
        old = self.existing("team", team_id, "Team")
        state = states.merged(old, self._team_members(fields), utcnow())
        await self.publisher.publish([EntityChanged(entity_type="team", entity_id=team_id, state=state)])
        return _json({"team_id": team_id, "data": self.with_spend("team", team_id, state)})

    async def team_info(self, request: web.Request) -> web.Response:
        team_id = self.query(request, {"team_id"}).get("team_id")
        if not team_id:
            raise AdminBadRequest("/team/info: team_id is required", param="team_id")
        state = self.existing("team", team_id, "Team")
        keys = [self.with_spend("key", h, s) for h, s in self.keys_of("team_id", team_id)]
        return _json({"team_id": team_id, "team_info": self.with_spend("team", team_id, state), "keys": keys,
                      "team_memberships": []})

    async def team_delete(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/team/delete")
        team_ids = fields["team_ids"]
        for team_id in team_ids:
            self.existing("team", team_id, "Team")
        changes = [self._deletion("key", h) for t in team_ids for h, _ in self.keys_of("team_id", t)]
        changes += [self._deletion("team", t) for t in team_ids]
        await self.publisher.publish(changes)
        return _json({"deleted_teams": team_ids, "deleted_keys": len(changes) - len(team_ids)})

    async def team_member_add(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/team/member_add")
        team_id = fields["team_id"]
        old = self.existing("team", team_id, "Team")
        members = list(old.get("members_with_roles") or [])
        now = utcnow()
        user_changes = []
        for member in fields["member"]:
            if not any(m.get("user_id") == member["user_id"] and m.get("user_email") == member["user_email"] for m in members):
                members.append(member)
            if member["user_id"]:
                user = self.directory.state("user", member["user_id"])
                if user is None:
                    user = states.created(states.USER_DEFAULTS, {"user_email": member["user_email"]}, now)
                    user["user_id"] = member["user_id"]
                teams = list(user.get("teams") or [])
                if team_id not in teams:
                    teams.append(team_id)
                user_changes.append(EntityChanged(entity_type="user", entity_id=member["user_id"],
                                                  state=states.merged(user, {"teams": teams}, now)))
        state = states.merged(old, self._team_members({"members_with_roles": members}), now)
        await self.publisher.publish([EntityChanged(entity_type="team", entity_id=team_id, state=state), *user_changes])
        body = self.with_spend("team", team_id, state, updated_users=[states.render(c.state) for c in user_changes],
                               updated_team_memberships=[])
        return _json(body)

    # -- internal users ------------------------------------------------------------------------

    async def user_new(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/user/new")
        user_id = fields.pop("user_id", None) or str(uuid.uuid4())
        if self.directory.state("user", user_id) is not None:
            raise AdminBadRequest(f"User with id={user_id} already exists.", param="user_id")
        auto_key = fields.pop("auto_create_key", None) is not False
        fields.pop("send_invite_email", None)
        key_fields = {k: fields.pop(k) for k in ("key_alias", "duration") if k in fields}
        self.check_team(fields.get("team_id"))
        state = states.created(states.USER_DEFAULTS, fields, utcnow())
        state["user_id"] = user_id
        changes = [EntityChanged(entity_type="user", entity_id=user_id, state=state)]
        raw = None
        if auto_key:
            key_fields.update(user_id=user_id, models=fields.get("models") or [], team_id=fields.get("team_id"))
            raw, key_change = self._generate(key_fields)
            changes.append(key_change)
        await self.publisher.publish(changes)
        extra: dict[str, Any] = {"key": raw}
        if raw is not None:
            extra.update(token_id=changes[1].entity_id, expires=changes[1].state.get("expires"))
        return _json(self.with_spend("user", user_id, state, **extra))

    async def user_update(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/user/update")
        user_id = fields.pop("user_id")
        old = self.existing("user", user_id, "User")
        if "team_id" in fields:
            self.check_team(fields["team_id"])
        state = states.merged(old, fields, utcnow())
        await self.publisher.publish([EntityChanged(entity_type="user", entity_id=user_id, state=state)])
        return _json({"user_id": user_id, "data": self.with_spend("user", user_id, state)})

    async def user_info(self, request: web.Request) -> web.Response:
        user_id = self.query(request, {"user_id"}).get("user_id")
        if not user_id:
            raise AdminBadRequest("/user/info: user_id is required", param="user_id")
        state = self.existing("user", user_id, "User")
        keys = [self.with_spend("key", h, s) for h, s in self.keys_of("user_id", user_id)]
        teams = [states.render(s) for t, s in self.directory.states("team") if t in (state.get("teams") or [])]
        return _json({"user_id": user_id, "user_info": self.with_spend("user", user_id, state), "keys": keys,
                      "teams": teams})

    async def user_delete(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/user/delete")
        user_ids = fields["user_ids"]
        for user_id in user_ids:
            self.existing("user", user_id, "User")
        changes = [self._deletion("key", h) for u in user_ids for h, _ in self.keys_of("user_id", u)]
        changes += [self._deletion("user", u) for u in user_ids]
        await self.publisher.publish(changes)
        return _json({"deleted_users": user_ids, "deleted_keys": len(changes) - len(user_ids)})

    # -- customers (end users: the request's `user`) --------------------------------------------

    async def customer_new(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/customer/new")
        user_id = fields.pop("user_id")
        if self.directory.state("customer", user_id) is not None:
            raise AdminBadRequest(f"Customer with user_id={user_id} already exists.", param="user_id")
        state = states.created(states.CUSTOMER_DEFAULTS, fields, utcnow())
        state["user_id"] = user_id
        await self.publisher.publish([EntityChanged(entity_type="customer", entity_id=user_id, state=state)])
        return _json(self.with_spend("customer", user_id, state))

    async def customer_update(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/customer/update")
        user_id = fields.pop("user_id")
        old = self.existing("customer", user_id, "Customer")
        state = states.merged(old, fields, utcnow())
        await self.publisher.publish([EntityChanged(entity_type="customer", entity_id=user_id, state=state)])
        return _json(self.with_spend("customer", user_id, state))

    async def customer_info(self, request: web.Request) -> web.Response:
        user_id = self.query(request, {"end_user_id"}).get("end_user_id")
        if not user_id:
            raise AdminBadRequest("/customer/info: end_user_id is required", param="end_user_id")
        return _json(self.with_spend("customer", user_id, self.existing("customer", user_id, "Customer")))

    async def customer_delete(self, request: web.Request) -> web.Response:
        fields = await self.body(request, "/customer/delete")
        user_ids = fields["user_ids"]
        for user_id in user_ids:
            self.existing("customer", user_id, "Customer")
        await self.publisher.publish([self._deletion("customer", u) for u in user_ids])
        return _json({"deleted_customers": user_ids})

    # ------------------------------------------------------------------------------------------

    def _deletion(self, kind: str, entity_id: str) -> EntityChanged:
        return EntityChanged(entity_type=kind, entity_id=entity_id, deleted=True,
                             state=dict(self.directory.state(kind, entity_id) or {}))


def add_admin_routes(app: web.Application, admin: Admin) -> None:
    post = {
        "/key/generate": admin.key_generate, "/key/update": admin.key_update, "/key/delete": admin.key_delete,
        "/team/new": admin.team_new, "/team/update": admin.team_update, "/team/delete": admin.team_delete,
        "/team/member_add": admin.team_member_add, "/user/new": admin.user_new, "/user/update": admin.user_update,
        "/user/delete": admin.user_delete, "/customer/new": admin.customer_new,
        "/customer/update": admin.customer_update, "/customer/delete": admin.customer_delete,
    }
    get = {"/key/info": admin.key_info, "/key/list": admin.key_list, "/team/info": admin.team_info,
           "/user/info": admin.user_info, "/customer/info": admin.customer_info}
    for path, handler in post.items():
        app.router.add_post(path, handler)
    for path, handler in get.items():
        app.router.add_get(path, handler)
