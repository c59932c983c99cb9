"""A key's model_max_budget: a leased budget per model, refused with LiteLLM's model budget error."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.admission import AwaitRenewal, BudgetRequest
from services.proxy.budget.core import BudgetSpec
from services.proxy.budget.entities import parse_money
from services.proxy.budget.lease_store import MemoryLeaseStore
from services.proxy.budget.model_budgets import ModelBudgetExceeded, model_budget_specs
from shared.events import EntityChanged
from tests.unit.test_budget_guard_leases import BODY, COST, D, admit, settle, workers

KEY_STATE = {"key_alias": "ci", "created_at": "2026-01-01T00:00:00+00:00",
             "model_max_budget": {"m": {"budget_limit": str(COST * 10), "time_period": "1d"}}}


async def test_a_keys_model_budget_refuses_that_model_after_its_budget() -> None:
    """Budget of 10 calls for model m on one of two workers: 10 calls, the 11th LiteLLM's budget_exceeded for m."""
    guard, _ = workers(MemoryLeaseStore(), 2)
    guard.directory.apply(EntityChanged(entity_type="key", entity_id="k1", state=KEY_STATE))
    who = CallerIdentity.from_state("k1", KEY_STATE)
    for _ in range(10):
        settle(guard, await admit(guard, who))
    with pytest.raises(ModelBudgetExceeded) as refused:
        await admit(guard, who)
    assert (refused.value.status, refused.value.type, refused.value.code) == (400, "budget_exceeded", "400")
    assert refused.value.message == "LiteLLM Virtual Key: k1, key_alias: ci, exceeded budget for model=m"


async def test_a_model_budget_leaves_the_keys_other_models_alone() -> None:
    """A key whose budget for m is spent still calls another model (no budget of its own)."""
    guard, = workers(MemoryLeaseStore(), 1)
    state = {**KEY_STATE, "model_max_budget": {"m": {"budget_limit": "0"}}}
    guard.directory.apply(EntityChanged(entity_type="key", entity_id="k1", state=state))
    who = CallerIdentity.from_state("k1", state)
    with pytest.raises(ModelBudgetExceeded):
        await admit(guard, who)
    request = BudgetRequest("r", who, "other", None, (), "acompletion", BODY)
    try:
        guard.admit(request)
    except AwaitRenewal as short:
        await short.admit_after_renewal()


def test_model_budgets_parse_litellms_shapes() -> None:
    """budget_limit + time_period, a bare amount (no period); bad amounts and periods are ignored."""
    key = BudgetSpec("key", "h", anchor=None)
    specs = model_budget_specs("h", {"model_max_budget": {
        "a": {"budget_limit": "0.5", "time_period": "1d"}, "b": 2, "c": {"budget_limit": "x"},
        "d": {"budget_limit": 1, "time_period": "soon"}, "e": {"budget_limit": -1}}}, key, parse_money)
    assert {model: (spec.kind, spec.entity_id, spec.max_budget, spec.duration) for model, spec in specs.items()} == {
        "a": ("model_budget", "h:a", D("0.5"), timedelta(days=1)), "b": ("model_budget", "h:b", D(2), None)}
