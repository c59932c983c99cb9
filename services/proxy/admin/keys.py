"""LiteLLM's key routes: /key/generate, /key/update, /key/delete, /key/info, /key/list,
/key/block, /key/unblock, /key/regenerate (also /key/{key}/regenerate).

Only a key's SHA-256 hash is stored or logged; the raw key is in the /key/generate and
/key/regenerate answers and nowhere else. An internal user manages only its own user's keys; any
key may read itself."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.proxy.admin import schemas, states
from services.proxy.admin.access import Allowed, Caller, denied
from services.proxy.admin.context import AdminContext, answer
from services.proxy.admin.validation import AdminBadRequest
from services.proxy.errors import PermissionDenied
from shared.errors import NotFound
from shared.events import EntityChanged, utcnow
from shared.keys import abbreviate, generate_key, hash_key

LIST_FILTERS = ("user_id", "team_id", "organization_id", "key_alias", "key_hash")


def shown(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "token"}


class KeyRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    # -- building a key --------------------------------------------------------------------------

    def _owned(self, caller: Caller, fields: dict[str, Any], path: str) -> dict[str, Any]:
        """An internal user's key is its own: user_id is the caller's, and a team must be one of
        the user's teams."""
        if caller.is_admin:
            return fields
        if fields.get("user_id") not in (None, caller.user_id):
            raise denied(path, caller)
        team_id = fields.get("team_id")
        if team_id is not None:
            user = self.ctx.directory.state("user", caller.user_id or "") or {}
            if team_id not in _team_ids(user.get("teams")):
                raise PermissionDenied(f"User={caller.user_id} is not a member of team={team_id}")
        return {**fields, "user_id": caller.user_id}

    def _inherited(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A team key belongs to the team's organisation unless it names one; a budget_id links
        that budget's limits."""
        self.ctx.check_exists("team", fields.get("team_id"), "team_id")
        self.ctx.check_exists("organization", fields.get("organization_id"), "organization_id")
        if fields.get("team_id") and not fields.get("organization_id"):
            team = self.ctx.directory.state("team", fields["team_id"]) or {}
            if team.get("organization_id"):
                fields = {**fields, "organization_id": team["organization_id"]}
        fields = self.ctx.linked_budget(fields)
        if fields.get("budget_id") is not None:
            fields["litellm_budget_table"] = states.budget_table(self.ctx.directory.state("budget", fields["budget_id"]) or {})
        fields.pop("spend", None)  # spend is the ledger's, summed from the spend logs
        return fields

    def generated(self, fields: dict[str, Any]) -> tuple[str, EntityChanged]:
        raw = fields.get("key") or generate_key()
        if not raw.startswith("sk-"):
            raise AdminBadRequest("a custom key must start with 'sk-'", param="key")
        api_key_hash = hash_key(raw)
        if self.ctx.directory.state("key", api_key_hash) is not None:
            raise AdminBadRequest("this key already exists", param="key")
        self.ctx.check_alias(fields.get("key_alias"))
        fields = self._inherited(fields)
        state = states.new_key_state(raw, api_key_hash, fields, utcnow())
        return raw, EntityChanged(entity_type="key", entity_id=api_key_hash, state=state)

    def _generated_answer(self, raw: str, change: EntityChanged, duration: Any) -> dict[str, Any]:
        return self.ctx.with_spend("key", change.entity_id, change.state, key=raw, token_id=change.entity_id,
                                   duration=duration)

    def _changed(self, api_key_hash: str, old: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        """The key's new state with the given fields (an alias still unique, links re-checked)."""
        if "key_alias" in fields:
            self.ctx.check_alias(fields["key_alias"], api_key_hash)
        if {"team_id", "organization_id", "budget_id"} & set(fields):
            fields = self._inherited(fields)
        fields.pop("spend", None)
        now = utcnow()
        return states.merged(old, states.key_fields(fields, now, old.get("metadata")), now)

    def _target(self, caller: Caller, given: str, path: str) -> tuple[str, dict[str, Any]]:
        """The key a change names; an internal user may name only its own user's keys."""
        api_key_hash = self.ctx.key_hash(given)
        state = self.ctx.existing("key", api_key_hash, "Key")
        if not caller.is_admin and not (caller.user_id and state.get("user_id") == caller.user_id):
            raise denied(path, caller)
        return api_key_hash, state

    # -- routes ----------------------------------------------------------------------------------

    async def generate(self, request: web.Request) -> web.Response:
        caller, fields = await self.ctx.body(request, schemas.KEY_GENERATE, allowed=Allowed.SELF_WRITE)
        raw, change = self.generated(self._owned(caller, fields, request.path))
        await self.ctx.publish(change)
        return answer(self._generated_answer(raw, change, fields.get("duration")))

    async def update(self, request: web.Request) -> web.Response:
        caller, fields = await self.ctx.body(request, schemas.KEY_UPDATE, ("key",), allowed=Allowed.SELF_WRITE)
        given = fields.pop("key")
        api_key_hash, old = self._target(caller, given, request.path)
        if not caller.is_admin and fields.get("user_id") not in (None, caller.user_id):
            raise denied(request.path, caller)
        state = self._changed(api_key_hash, old, fields)
        await self.ctx.publish(EntityChanged(entity_type="key", entity_id=api_key_hash, state=state))
        return answer(self.ctx.with_spend("key", api_key_hash, shown(state), key=given))

    async def delete(self, request: web.Request) -> web.Response:
        caller, fields = await self.ctx.body(request, schemas.KEY_DELETE, allowed=Allowed.SELF_WRITE)
        given = list(fields.get("keys") or [])
        hashes = [self._target(caller, k, request.path)[0] for k in given]
        for alias in fields.get("key_aliases") or []:
            holder = self.ctx.directory.key_by_alias(alias)
            if holder is None:
                raise NotFound(f"Key not found: alias {alias}", code="404")
            hashes.append(self._target(caller, holder, request.path)[0])
            given.append(alias)
        if not hashes:
            raise AdminBadRequest("At least one of 'keys' or 'key_aliases' must be provided.", param="keys")
        await self.ctx.publish(*[self.ctx.deletion("key", h) for h in dict.fromkeys(hashes)])
        return answer({"deleted_keys": given})

    async def info(self, request: web.Request) -> web.Response:
        """Without key=, the calling key itself (LiteLLM's rule); a key may read its own user's keys."""
        caller, params = self.ctx.query(request, ("key",), allowed=Allowed.SELF_READ)
        given = params.get("key")
        if not given:
            if caller.api_key_hash is None:  # LiteLLM looks the master key up and does not find it
                raise NotFound("Key not found in database", type="not_found_error", param="key", code="404")
            api_key_hash = caller.api_key_hash
            given = api_key_hash
        else:
            api_key_hash = self.ctx.key_hash(given)
        state = self.ctx.existing("key", api_key_hash, "Key")
        own = api_key_hash == caller.api_key_hash or (caller.user_id is not None and state.get("user_id") == caller.user_id)
        if not (own or caller.reads_everything):
            raise PermissionDenied(f"You are not allowed to access this key's info. Your role={caller.role or 'unknown'}")
        return answer({"key": given, "info": self.ctx.with_spend("key", api_key_hash, shown(state))})

    async def list(self, request: web.Request) -> web.Response:
        caller, params = self.ctx.query(request, (*LIST_FILTERS, "page", "size", "page_size", "return_full_object",
                                                  "sort_by", "sort_order"), allowed=Allowed.SELF_READ)
        page, size = self.ctx.page(params)
        rows = [(h, s) for h, s in self.ctx.directory.states("key") if self._listed(caller, h, s, params)]
        sort_by = params.get("sort_by") or "created_at"
        descending = params.get("sort_order", "desc").lower() != "asc"
        rows.sort(key=lambda row: (str(row[1].get(sort_by) or ""), row[0]), reverse=descending)
        chosen = rows[(page - 1) * size: page * size]
        full = params.get("return_full_object", "false").lower() == "true"
        keys = [self.ctx.with_spend("key", h, shown(s), token=h) for h, s in chosen] if full else [h for h, _ in chosen]
        return answer({"keys": keys, "total_count": len(rows), "current_page": page,
                       "total_pages": -(-len(rows) // size)})

    @staticmethod
    def _listed(caller: Caller, api_key_hash: str, state: dict[str, Any], params: dict[str, str]) -> bool:
        if not caller.reads_everything:
            mine = api_key_hash == caller.api_key_hash or (caller.user_id is not None and state.get("user_id") == caller.user_id)
            if not mine:
                return False
        for name in LIST_FILTERS:
            if name in params:
                value = api_key_hash if name == "key_hash" else state.get(name)
                if value != params[name]:
                    return False
        return True

    async def _set_blocked(self, request: web.Request, blocked: bool) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.KEY_BLOCK, ("key",))
        api_key_hash = self.ctx.key_hash(fields["key"])
        state = states.merged(self.ctx.existing("key", api_key_hash, "Key"), {"blocked": blocked}, utcnow())
        await self.ctx.publish(EntityChanged(entity_type="key", entity_id=api_key_hash, state=state))
        return answer(self.ctx.with_spend("key", api_key_hash, state))

    async def block(self, request: web.Request) -> web.Response:
        return await self._set_blocked(request, True)

    async def unblock(self, request: web.Request) -> web.Response:
        return await self._set_blocked(request, False)

    async def regenerate(self, request: web.Request) -> web.Response:
        """A new raw key with the old one's settings (and any given here); the old key stops
        working at once. Its spend so far stays in the logs under the old key's hash."""
        caller, fields = await self.ctx.body(request, schemas.KEY_REGENERATE, allowed=Allowed.SELF_WRITE)
        given = request.match_info.get("key") or fields.pop("key", None)
        fields.pop("key", None)
        if not given:
            raise AdminBadRequest("/key/regenerate: key is required", param="key")
        old_hash, old = self._target(caller, given, request.path)
        raw = fields.pop("new_key", None) or generate_key()
        for name in ("new_master_key", "grace_period"):
            fields.pop(name, None)
        if not raw.startswith("sk-"):
            raise AdminBadRequest("new_key must start with 'sk-'", param="new_key")
        new_hash = hash_key(raw)
        if self.ctx.directory.state("key", new_hash) is not None:
            raise AdminBadRequest("this key already exists", param="new_key")
        state = self._changed(old_hash, old, fields)
        state.update(token=new_hash, key_name=abbreviate(raw))
        change = EntityChanged(entity_type="key", entity_id=new_hash, state=state)
        await self.ctx.publish(self.ctx.deletion("key", old_hash), change)
        return answer(self._generated_answer(raw, change, fields.get("duration")))


def _team_ids(teams: Any) -> set[str]:
    """A user's `teams`: ids, or {team_id, ...} objects."""
    out: set[str] = set()
    for team in teams or []:
        if isinstance(team, str):
            out.add(team)
        elif isinstance(team, dict) and isinstance(team.get("team_id"), str):
            out.add(team["team_id"])
    return out
