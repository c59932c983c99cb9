"""LiteLLM's team routes: /team/new, /team/update, /team/delete, /team/info, /team/list,
/team/member_add, /team/member_delete, /team/member_update, /team/block, /team/unblock.

A member's max_budget_in_team is kept in the team's `team_memberships` (LiteLLM's
LiteLLM_TeamMembership shape), which /team/info answers beside the team."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from services.proxy.admin import schemas, states
from services.proxy.admin.access import Allowed, Caller, require_team_admin
from services.proxy.admin.context import AdminContext, answer, is_member
from services.proxy.admin.validation import AdminBadRequest
from shared.events import EntityChanged, utcnow

MEMBERSHIPS = "team_memberships"


def with_roles(fields: dict[str, Any]) -> dict[str, Any]:
    """`admins` and `members` follow `members_with_roles`, as in LiteLLM's team row."""
    if fields.get("members_with_roles") is not None:
        members = fields["members_with_roles"]
        fields["admins"] = [m["user_id"] for m in members if m["role"] == "admin" and m["user_id"]]
        fields["members"] = [m["user_id"] for m in members if m["role"] == "user" and m["user_id"]]
    return fields


class TeamRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def _team_answer(self, team_id: str, state: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return self.ctx.with_spend("team", team_id, {k: v for k, v in state.items() if k != MEMBERSHIPS}, **extra)

    async def new(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.TEAM_NEW)
        team_id = fields.pop("team_id", None) or str(uuid.uuid4())
        if self.ctx.directory.state("team", team_id) is not None:
            raise AdminBadRequest(f"Team id = {team_id} already exists. Please use a different team id.", param="team_id")
        self.ctx.check_exists("organization", fields.get("organization_id"), "organization_id")
        state = states.created(states.TEAM_DEFAULTS, with_roles(fields), utcnow())
        state["team_id"] = team_id
        await self.ctx.publish(EntityChanged(entity_type="team", entity_id=team_id, state=state))
        return answer(self._team_answer(team_id, state))

    async def update(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.TEAM_UPDATE, ("team_id",))
        team_id = fields.pop("team_id")
        old = self.ctx.existing("team", team_id, "Team")
        self.ctx.check_exists("organization", fields.get("organization_id"), "organization_id")
        state = states.merged(old, with_roles(fields), utcnow())
        await self.ctx.publish(EntityChanged(entity_type="team", entity_id=team_id, state=state))
        return answer({"team_id": team_id, "data": self._team_answer(team_id, state)})

    async def info(self, request: web.Request) -> web.Response:
        _, params = self.ctx.query(request, ("team_id",), allowed=Allowed.ADMIN_READ)
        team_id = params.get("team_id")
        if not team_id:
            raise AdminBadRequest("/team/info: team_id is required", param="team_id")
        state = self.ctx.existing("team", team_id, "Team")
        keys = [self.ctx.with_spend("key", h, s) for h, s in self.ctx.with_field("key", "team_id", team_id)]
        return answer({"team_id": team_id, "team_info": self._team_answer(team_id, state), "keys": keys,
                       "team_memberships": states.render({MEMBERSHIPS: state.get(MEMBERSHIPS) or []})[MEMBERSHIPS]})

    async def list(self, request: web.Request) -> web.Response:
        """Every team, or those of a user_id or organization_id; each with its keys."""
        _, params = self.ctx.query(request, ("user_id", "organization_id"), allowed=Allowed.ADMIN_READ)
        teams = []
        for team_id, state in sorted(self.ctx.directory.states("team")):
            if "organization_id" in params and state.get("organization_id") != params["organization_id"]:
                continue
            if "user_id" in params and not any(m.get("user_id") == params["user_id"]
                                               for m in state.get("members_with_roles") or []):
                continue
            keys = [self.ctx.with_spend("key", h, s) for h, s in self.ctx.with_field("key", "team_id", team_id)]
            teams.append(self._team_answer(team_id, state, keys=keys))
        return answer(teams)

    async def delete(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.TEAM_DELETE, ("team_ids",))
        team_ids = fields["team_ids"]
        for team_id in team_ids:
            self.ctx.existing("team", team_id, "Team")
        changes = [self.ctx.deletion("key", h) for t in team_ids for h, _ in self.ctx.with_field("key", "team_id", t)]
        changes += [self.ctx.deletion("team", t) for t in team_ids]
        await self.ctx.publish(*changes)
        return answer({"deleted_teams": team_ids, "deleted_keys": len(changes) - len(team_ids)})

    async def member_add(self, request: web.Request) -> web.Response:
        caller, fields = await self.ctx.body(request, schemas.TEAM_MEMBER_ADD, ("team_id", "member"), allowed=Allowed.TEAM_ADMIN)
        team_id = fields["team_id"]
        old = self._managed(caller, team_id, request.path)
        members = list(old.get("members_with_roles") or [])
        now = utcnow()
        user_changes = []
        for member in fields["member"]:
            if not any(m.get("user_id") == member["user_id"] and m.get("user_email") == member["user_email"] for m in members):
                members.append(member)
            if member["user_id"]:
                user_changes.append(self.ctx.user_joined(member, "teams", team_id, now))
        memberships = list(old.get(MEMBERSHIPS) or [])
        if fields.get("max_budget_in_team") is not None:
            for member in fields["member"]:
                memberships = _with_budget(memberships, team_id, member["user_id"], fields["max_budget_in_team"])
        state = states.merged(old, with_roles({"members_with_roles": members, MEMBERSHIPS: memberships}), now)
        await self.ctx.publish(EntityChanged(entity_type="team", entity_id=team_id, state=state), *user_changes)
        return answer(self._team_answer(team_id, state, updated_users=[states.render(c.state) for c in user_changes],
                                        updated_team_memberships=states.render({MEMBERSHIPS: memberships})[MEMBERSHIPS]))

    async def member_delete(self, request: web.Request) -> web.Response:
        caller, fields = await self.ctx.body(request, schemas.TEAM_MEMBER_DELETE, ("team_id",), allowed=Allowed.TEAM_ADMIN)
        self._managed(caller, fields["team_id"], request.path)
        team_id, old, user_id, email = self.ctx.member_of("team", fields, "members_with_roles", "Team")
        removed = [m for m in old.get("members_with_roles") or [] if is_member(m, user_id, email)]
        members = [m for m in old.get("members_with_roles") or [] if not is_member(m, user_id, email)]
        gone = {m.get("user_id") for m in removed if m.get("user_id")}
        memberships = [m for m in old.get(MEMBERSHIPS) or [] if m.get("user_id") not in gone]
        now = utcnow()
        changes = [EntityChanged(entity_type="team", entity_id=team_id, state=states.merged(
            old, with_roles({"members_with_roles": members, MEMBERSHIPS: memberships}), now))]
        changes += [c for member_id in sorted(gone) if (c := self.ctx.user_left(member_id, "teams", team_id, now))]
        await self.ctx.publish(*changes)
        return answer(self._team_answer(team_id, changes[0].state))

    async def member_update(self, request: web.Request) -> web.Response:
        caller, fields = await self.ctx.body(request, schemas.TEAM_MEMBER_UPDATE, ("team_id",), allowed=Allowed.TEAM_ADMIN)
        self._managed(caller, fields["team_id"], request.path)
        team_id, old, user_id, email = self.ctx.member_of("team", fields, "members_with_roles", "Team")
        members = [dict(m, role=fields["role"]) if fields.get("role") and is_member(m, user_id, email) else m
                   for m in old.get("members_with_roles") or []]
        memberships = list(old.get(MEMBERSHIPS) or [])
        member_id = user_id or next((m.get("user_id") for m in members if is_member(m, None, email)), None)
        if "max_budget_in_team" in fields:
            memberships = _with_budget(memberships, team_id, member_id, fields["max_budget_in_team"])
        state = states.merged(old, with_roles({"members_with_roles": members, MEMBERSHIPS: memberships}), utcnow())
        await self.ctx.publish(EntityChanged(entity_type="team", entity_id=team_id, state=state))
        return answer({"team_id": team_id, "user_id": member_id, "user_email": email,
                       "max_budget_in_team": fields.get("max_budget_in_team")})

    def _managed(self, caller: Caller, team_id: str, path: str) -> dict[str, Any]:
        """The team, if the caller may manage its members (LiteLLM's team admin rule)."""
        team = self.ctx.existing("team", team_id, "Team")
        require_team_admin(caller, team_id, team, path)
        return team

    async def _set_blocked(self, request: web.Request, blocked: bool) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.TEAM_BLOCK, ("team_id",))
        team_id = fields["team_id"]
        state = states.merged(self.ctx.existing("team", team_id, "Team"), {"blocked": blocked}, utcnow())
        await self.ctx.publish(EntityChanged(entity_type="team", entity_id=team_id, state=state))
        return answer(self._team_answer(team_id, state))

    async def block(self, request: web.Request) -> web.Response:
        return await self._set_blocked(request, True)

    async def unblock(self, request: web.Request) -> web.Response:
        return await self._set_blocked(request, False)


def _with_budget(memberships: list[dict[str, Any]], team_id: str, user_id: str | None, max_budget: Any) -> list[dict[str, Any]]:
    """The member's LiteLLM_TeamMembership row with its budget set (wire form: money as text)."""
    if user_id is None:
        return memberships
    amount = None if max_budget is None else format(max_budget, "f")
    rest = [m for m in memberships if m.get("user_id") != user_id]
    return [*rest, {"user_id": user_id, "team_id": team_id, "budget_id": None,
                    "litellm_budget_table": {"max_budget": amount}}]
