"""Every LiteLLM management route the proxy answers, on LiteLLM's paths and methods. Each handler
checks the caller (access.py) and the body (validation.py, schemas.py; 400, nothing changed),
builds the entity's full new state, publishes it (EntityChanged, acks=all) and answers in
LiteLLM's shape. docs/management-api.md is the reference."""

from __future__ import annotations

from aiohttp import web

from services.proxy.admin.budgets import BudgetRoutes
from services.proxy.admin.context import AdminContext
from services.proxy.admin.keys import KeyRoutes
from services.proxy.admin.organizations import OrganizationRoutes
from services.proxy.admin.people import CustomerRoutes, UserRoutes
from services.proxy.admin.teams import TeamRoutes


def add_admin_routes(app: web.Application, ctx: AdminContext) -> None:
    keys, teams, budgets = KeyRoutes(ctx), TeamRoutes(ctx), BudgetRoutes(ctx)
    users, customers, orgs = UserRoutes(ctx, keys), CustomerRoutes(ctx), OrganizationRoutes(ctx, budgets)
    routes = [
        ("POST", "/key/generate", keys.generate), ("POST", "/key/update", keys.update),
        ("POST", "/key/delete", keys.delete), ("GET", "/key/info", keys.info), ("GET", "/key/list", keys.list),
        ("POST", "/key/block", keys.block), ("POST", "/key/unblock", keys.unblock),
        ("POST", "/key/regenerate", keys.regenerate), ("POST", "/key/{key}/regenerate", keys.regenerate),
        ("POST", "/team/new", teams.new), ("POST", "/team/update", teams.update), ("POST", "/team/delete", teams.delete),
        ("GET", "/team/info", teams.info), ("GET", "/team/list", teams.list),
        ("POST", "/team/member_add", teams.member_add), ("POST", "/team/member_delete", teams.member_delete),
        ("POST", "/team/member_update", teams.member_update), ("POST", "/team/block", teams.block),
        ("POST", "/team/unblock", teams.unblock),
        ("POST", "/user/new", users.new), ("POST", "/user/update", users.update), ("POST", "/user/delete", users.delete),
        ("GET", "/user/info", users.info), ("GET", "/user/list", users.list),
        ("POST", "/budget/new", budgets.new), ("POST", "/budget/update", budgets.update),
        ("POST", "/budget/info", budgets.info), ("GET", "/budget/list", budgets.list),
        ("POST", "/budget/delete", budgets.delete),
        ("POST", "/organization/new", orgs.new), ("PATCH", "/organization/update", orgs.update),
        ("DELETE", "/organization/delete", orgs.delete), ("GET", "/organization/info", orgs.info),
        ("GET", "/organization/list", orgs.list), ("POST", "/organization/member_add", orgs.member_add),
        ("PATCH", "/organization/member_update", orgs.member_update),
        ("DELETE", "/organization/member_delete", orgs.member_delete),
    ]
    # LiteLLM's organisation routes use PATCH and DELETE; clients that POST everything work too.
    routes += [("POST", path, handler) for method, path, handler in routes if method in ("PATCH", "DELETE")]
    for prefix in ("/customer", "/end_user"):
        routes += [
            ("POST", f"{prefix}/new", customers.new), ("POST", f"{prefix}/update", customers.update),
            ("POST", f"{prefix}/delete", customers.delete), ("GET", f"{prefix}/info", customers.info),
            ("GET", f"{prefix}/list", customers.list), ("POST", f"{prefix}/block", customers.block),
            ("POST", f"{prefix}/unblock", customers.unblock),
        ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
