"""`max_budget_in_team`: a team member's budget for its spend within the team. Plain code.

The admin routes keep it in the team's `team_memberships` (LiteLLM_TeamMembership rows:
`{"user_id", "team_id", "litellm_budget_table": {"max_budget", "budget_duration"?}}`). Each member's
budget is an entity of its own, `team_member` `<team id>:<user id>`, leased like any budget and
counted from the team's creation. The ledger keeps no total per member, so the authority knows that
spend from the leases' charges alone (which bound it: docs/budgets.md, Claim 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.budget_windows import BadDuration, parse_duration
from services.proxy.budget.core import BudgetSpec

KIND = "team_member"


def member_budget_specs(team_id: str, state: Mapping[str, Any], team_spec: BudgetSpec,
                        parse_money: Any) -> dict[str, BudgetSpec]:
    """user id -> the member's BudgetSpec; members without a budget (or a valid one) have none."""
    specs = {}
    for membership in state.get("team_memberships") or ():
        if not isinstance(membership, Mapping) or not membership.get("user_id"):
            continue
        table = membership.get("litellm_budget_table")
        if not isinstance(table, Mapping):
            continue
        amount = parse_money(table.get("max_budget"))
        try:
            period = parse_duration(table.get("budget_duration"))
        except BadDuration:
            period = None
        if amount is None or amount < 0:
            continue
        user_id = str(membership["user_id"])
        specs[user_id] = BudgetSpec(KIND, f"{team_id}:{user_id}", amount, anchor=team_spec.anchor, duration=period)
    return specs
