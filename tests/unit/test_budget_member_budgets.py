"""max_budget_in_team: a member's spend within its team, leased like any budget, refused with
LiteLLM's team member budget error."""

from __future__ import annotations

import pytest

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.core import BudgetSpec
from services.proxy.budget.entities import parse_money
from services.proxy.budget.guard import BudgetExceeded
from services.proxy.budget.lease_store import MemoryLeaseStore
from services.proxy.budget.member_budgets import member_budget_specs
from shared.events import EntityChanged
from tests.unit.test_budget_guard_leases import COST, D, admit, settle, workers

TEAM = {"team_id": "t1", "created_at": "2026-01-01T00:00:00+00:00", "team_memberships": [
    {"user_id": "u1", "team_id": "t1", "budget_id": None, "litellm_budget_table": {"max_budget": str(COST * 5)}},
    {"user_id": "u2", "team_id": "t1", "budget_id": None, "litellm_budget_table": {"max_budget": None}}]}


async def test_a_members_budget_in_the_team_refuses_its_next_call_there() -> None:
    """u1 has 5 calls' worth in t1: 5 calls through two of its team keys, the 6th LiteLLM's member error; u2 goes on."""
    guard, = workers(MemoryLeaseStore(), 1)
    guard.directory.apply(EntityChanged(entity_type="team", entity_id="t1", state=TEAM))
    keys = [CallerIdentity.from_state(k, {"team_id": "t1", "user_id": "u1"}) for k in ("k1", "k2")]
    for i in range(5):
        settle(guard, await admit(guard, keys[i % 2]))
    with pytest.raises(BudgetExceeded) as refused:
        await admit(guard, keys[0])
    assert (refused.value.status, refused.value.type) == (400, "budget_exceeded")
    assert refused.value.message == "Budget has been exceeded! User=u1 in Team=t1 Current cost: 0.00003700, Max budget: 0.0000370"
    settle(guard, await admit(guard, CallerIdentity.from_state("k3", {"team_id": "t1", "user_id": "u2"})))
    settle(guard, await admit(guard, CallerIdentity.from_state("k4", {"user_id": "u1"})))  # outside the team


def test_member_budgets_parse_the_memberships() -> None:
    """A membership with an amount (and optional budget_duration) gives a spec; null or bad amounts none."""
    team = BudgetSpec("team", "t1")
    state = {"team_memberships": [*TEAM["team_memberships"], {"user_id": "u3", "litellm_budget_table": {"max_budget": "x"}},
                                  {"user_id": "u4", "litellm_budget_table": {"max_budget": "1", "budget_duration": "30d"}}]}
    specs = member_budget_specs("t1", state, team, parse_money)
    assert {user: (spec.kind, spec.entity_id, spec.max_budget, spec.duration is not None) for user, spec in specs.items()} == {
        "u1": ("team_member", "t1:u1", COST * 5, False), "u4": ("team_member", "t1:u4", D(1), True)}
