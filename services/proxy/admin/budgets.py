"""LiteLLM's budget routes: /budget/new, /budget/update, /budget/info, /budget/list,
/budget/delete. A budget is a named set of limits (LiteLLM_BudgetTable); a key, customer or
organisation that names its budget_id takes those limits and enforces them. Changing a budget
republishes every entity linked to it, so the change is enforced at once on every replica."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from services.proxy.admin import schemas, states
from services.proxy.admin.access import Allowed
from services.proxy.admin.context import AdminContext, answer
from services.proxy.admin.validation import AdminBadRequest
from shared.events import EntityChanged, utcnow

LINKING_KINDS = ("key", "customer", "organization")


class BudgetRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def created(self, fields: dict[str, Any]) -> EntityChanged:
        """A new budget row from BudgetNewRequest fields (also used by /organization/new)."""
        budget_id = fields.pop("budget_id", None) or str(uuid.uuid4())
        if self.ctx.directory.state("budget", budget_id) is not None:
            raise AdminBadRequest(f"Budget id = {budget_id} already exists.", param="budget_id")
        limits = {k: v for k, v in fields.items() if k in schemas.BUDGET_FIELDS}
        state = states.created(states.BUDGET_DEFAULTS, limits, utcnow())
        state["budget_id"] = budget_id
        return EntityChanged(entity_type="budget", entity_id=budget_id, state=state)

    def linked(self, budget_id: str, budget: dict[str, Any]) -> list[EntityChanged]:
        """Every entity naming this budget, with its limits and litellm_budget_table updated."""
        table = states.budget_table(budget)
        limits = {k: v for k, v in table.items() if k != "budget_id"}
        now = utcnow()
        return [EntityChanged(entity_type=kind, entity_id=entity_id,
                              state=states.merged(state, {**limits, "litellm_budget_table": table}, now))
                for kind in LINKING_KINDS for entity_id, state in self.ctx.with_field(kind, "budget_id", budget_id)]

    async def new(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.BUDGET_FIELDS)
        change = self.created(fields)
        await self.ctx.publish(change)
        return answer(states.render(change.state))

    async def update(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.BUDGET_FIELDS, ("budget_id",))
        budget_id = fields.pop("budget_id")
        state = states.merged(self.ctx.existing("budget", budget_id, "Budget"), fields, utcnow())
        await self.ctx.publish(EntityChanged(entity_type="budget", entity_id=budget_id, state=state),
                               *self.linked(budget_id, state))
        return answer(states.render(state))

    async def info(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.BUDGET_INFO, ("budgets",), allowed=Allowed.ADMIN_READ)
        return answer([states.render(self.ctx.existing("budget", b, "Budget")) for b in fields["budgets"]])

    async def list(self, request: web.Request) -> web.Response:
        self.ctx.access.require(request, Allowed.ADMIN_READ)
        return answer([states.render(s) for _, s in sorted(self.ctx.directory.states("budget"))])

    async def delete(self, request: web.Request) -> web.Response:
        _, fields = await self.ctx.body(request, schemas.BUDGET_DELETE, ("id",))
        budget_id = fields["id"]
        state = self.ctx.existing("budget", budget_id, "Budget")
        users = [f"{kind}={i}" for kind in LINKING_KINDS for i, _ in self.ctx.with_field(kind, "budget_id", budget_id)]
        if users:
            raise AdminBadRequest(f"Budget {budget_id} is still linked to {', '.join(users[:5])}: unlink them first",
                                  param="id")
        await self.ctx.publish(self.ctx.deletion("budget", budget_id))
        return answer(states.render(state))
