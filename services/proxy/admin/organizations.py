"""LiteLLM's organisation routes: /organization/new, /organization/update, /organization/delete,
/organization/info, /organization/list, /organization/member_add, /organization/member_update,
/organization/member_delete (each on LiteLLM's HTTP method, and POST).

An organisation always has a budget row (LiteLLM's rule): the one its budget_id names, or one made
from the limits given at /organization/new. Its limits are kept at the top of its state too, where
the budget guard reads them: a key or team of the organisation answers to its budget."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from services.proxy.admin import schemas, states
from services.proxy.admin.access import Allowed
from services.proxy.admin.budgets import BudgetRoutes
from services.proxy.admin.context import AdminContext, answer, is_member
from services.proxy.admin.validation import AdminBadRequest
from shared.events import EntityChanged, utcnow


class OrganizationRoutes:
    def __init__(self, ctx: AdminContext, budgets: BudgetRoutes) -> None:
        self.ctx = ctx
        self.budgets = budgets

    def _answer(self, organization_id: str, state: dict[str, Any]) -> dict[str, Any]:
        """LiteLLM_OrganizationTableWithMembers: the row, its members, teams and budget table."""
        teams = [states.render(s) for _, s in self.ctx.with_field("team", "organization_id", organization_id)]
        return self.ctx.with_spend("organization", organization_id, state, teams=teams, users=None,
                                   litellm_budget_table=states.budget_table(state))

    async def new(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.ORG_NEW, ("organization_alias",))
        organization_id = fields.pop("organization_id", None) or str(uuid.uuid4())
        if self.ctx.directory.state("organization", organization_id) is not None:
            raise AdminBadRequest(f"Organization id = {organization_id} already exists.", param="organization_id")
        changes = []
        if fields.get("budget_id") is None:
            budget = self.budgets.created(dict(fields))
            fields["budget_id"] = budget.entity_id
            changes.append(budget)
        else:
            fields = self.ctx.linked_budget(fields)
        state = states.created(states.ORGANIZATION_DEFAULTS, fields, utcnow())
        state["organization_id"] = organization_id
        changes.append(EntityChanged(entity_type="organization", entity_id=organization_id, state=state))
        await self.ctx.publish(*changes)
        return answer(self._answer(organization_id, state))

    async def update(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.ORG_UPDATE, ("organization_id",))
        organization_id = fields.pop("organization_id")
        old = self.ctx.existing("organization", organization_id, "Organization")
        fields.pop("spend", None)  # the ledger's, summed from the spend logs
        fields = self.ctx.linked_budget(fields) if fields.get("budget_id") else fields
        state = states.merged(old, fields, utcnow())
        await self.ctx.publish(EntityChanged(entity_type="organization", entity_id=organization_id, state=state))
        return answer(self._answer(organization_id, state))

    async def info(self, request: web.Request) -> web.Response:
        _, params = self.ctx.query(request, ("organization_id",), allowed=Allowed.ADMIN_READ)
        organization_id = params.get("organization_id")
        if not organization_id:
            raise AdminBadRequest("/organization/info: organization_id is required", param="organization_id")
        return answer(self._answer(organization_id, self.ctx.existing("organization", organization_id, "Organization")))

    async def list(self, request: web.Request) -> web.Response:
        self.ctx.access.require(request, Allowed.ADMIN_READ)
        return answer([self._answer(o, s) for o, s in sorted(self.ctx.directory.states("organization"))])

    async def delete(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.ORG_DELETE, ("organization_ids",))
        ids = fields["organization_ids"]
        shown = [self._answer(o, self.ctx.existing("organization", o, "Organization")) for o in ids]
        changes = [change for o in ids for change in self._cascade(o)]
        await self.ctx.publish(*changes, *[self.ctx.deletion("organization", o) for o in ids])
        return answer(shown)

    def _cascade(self, organization_id: str) -> list[EntityChanged]:
        """LiteLLM's delete_organization deletes the organisation's teams, keys and memberships with
        it; a deleted team's keys go too (as /team/delete's do), and its members' `organizations`
        no longer name it."""
        teams = {t for t, _ in self.ctx.with_field("team", "organization_id", organization_id)}
        keys = [h for h, s in self.ctx.directory.states("key")
                if s.get("organization_id") == organization_id or s.get("team_id") in teams]
        now = utcnow()
        members = self.ctx.directory.state("organization", organization_id) or {}
        left = [self.ctx.user_left(m.get("user_id"), "organizations", organization_id, now)
                for m in members.get("members") or []]
        return ([self.ctx.deletion("key", h) for h in keys] + [self.ctx.deletion("team", t) for t in sorted(teams)]
                + [c for c in left if c is not None])

    async def member_add(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.ORG_MEMBER_ADD, ("organization_id", "member"))
        organization_id = fields["organization_id"]
        old = self.ctx.existing("organization", organization_id, "Organization")
        now = utcnow()
        members = list(old.get("members") or [])
        user_changes = []
        for member in fields["member"]:
            if member["role"] is None:
                raise AdminBadRequest("member role is required", param="member")
            members = [m for m in members if not is_member(m, member["user_id"], member["user_email"])]
            members.append(_membership(organization_id, member["user_id"], member["user_email"], member["role"],
                                       fields.get("max_budget_in_organization"), now))
            if member["user_id"]:
                user_changes.append(self.ctx.user_joined(member, "organizations", organization_id, now))
        state = states.merged(old, {"members": members}, now)
        await self.ctx.publish(EntityChanged(entity_type="organization", entity_id=organization_id, state=state),
                               *user_changes)
        added = {m["user_id"] or m["user_email"] for m in fields["member"]}
        return answer({"organization_id": organization_id,
                       "updated_users": [states.render(c.state) for c in user_changes],
                       "updated_organization_memberships": [states.render(m) for m in members
                                                            if (m["user_id"] or m["user_email"]) in added]})

    async def member_update(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.ORG_MEMBER_UPDATE, ("organization_id",))
        organization_id, old, user_id, email = self.ctx.member_of("organization", fields, "members", "Organization")
        now = utcnow()
        members = []
        for m in old.get("members") or []:
            if is_member(m, user_id, email):
                budget = m.get("litellm_budget_table") or {}
                if "max_budget_in_organization" in fields:
                    amount = fields["max_budget_in_organization"]
                    budget = {"max_budget": None if amount is None else format(amount, "f")}
                m = {**m, "user_role": fields.get("role") or m.get("user_role"), "litellm_budget_table": budget,
                     "updated_at": now.isoformat()}
                updated = m
            members.append(m)
        state = states.merged(old, {"members": members}, now)
        await self.ctx.publish(EntityChanged(entity_type="organization", entity_id=organization_id, state=state))
        return answer(states.render(updated))

    async def member_delete(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.ORG_MEMBER_DELETE, ("organization_id",))
        organization_id, old, user_id, email = self.ctx.member_of("organization", fields, "members", "Organization")
        removed = [m for m in old.get("members") or [] if is_member(m, user_id, email)]
        now = utcnow()
        changes = [EntityChanged(entity_type="organization", entity_id=organization_id, state=states.merged(
            old, {"members": [m for m in old.get("members") or [] if not is_member(m, user_id, email)]}, now))]
        changes += [c for m in removed if (c := self.ctx.user_left(m.get("user_id"), "organizations", organization_id, now))]
        await self.ctx.publish(*changes)
        return answer([states.render(m) for m in removed])


def _membership(organization_id: str, user_id: str | None, email: str | None, role: str, max_budget: Any,
                now: Any) -> dict[str, Any]:
    """A LiteLLM_OrganizationMembershipTable row (money in wire form)."""
    return {"user_id": user_id, "user_email": email, "organization_id": organization_id, "user_role": role,
            "spend": "0", "budget_id": None,
            "litellm_budget_table": None if max_budget is None else {"max_budget": format(max_budget, "f")},
            "created_at": now.isoformat(), "updated_at": now.isoformat()}
