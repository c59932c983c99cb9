"""A key's `model_max_budget`: a budget per model it calls, leased like any budget. Plain code.

LiteLLM's shape: `{"gpt-4o": {"budget_limit": "0.0001", "time_period": "1d"}}` (a bare amount is a
budget without a period, as LiteLLM's older shape). Each model's budget is an entity of its own,
`model_budget` `<key hash>:<model>`, its window counted from the key's creation like the key's own.
The ledger keeps no total per key and model, so the authority knows this spend from the leases'
charges alone (which bound it: docs/budgets.md, Claim 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.budget_windows import BadDuration, parse_duration
from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.core import BudgetSpec
from services.proxy.errors import ProxyError

KIND = "model_budget"


class ModelBudgetExceeded(ProxyError):
    """LiteLLM's answer when a key's budget for one model is used up: 400, type "budget_exceeded"."""

    status = 400

    def __init__(self, caller: CallerIdentity, model: str) -> None:
        super().__init__(f"LiteLLM Virtual Key: {caller.api_key_hash}, key_alias: {caller.key_alias}, "
                         f"exceeded budget for model={model}", type="budget_exceeded", code="400")


def model_budget_specs(api_key_hash: str, state: Mapping[str, Any], key_spec: BudgetSpec,
                       parse_money: Any) -> dict[str, BudgetSpec]:
    """model -> its BudgetSpec, from the key's state (`parse_money`: the directory's parser); entries
    without a valid amount are ignored (the admin routes refuse them; this only guards old states)."""
    budgets = state.get("model_max_budget")
    if not isinstance(budgets, Mapping):
        return {}
    specs = {}
    for model, config in budgets.items():
        period = None
        if isinstance(config, Mapping):
            amount = parse_money(config.get("budget_limit", config.get("max_budget")))
            try:
                period = parse_duration(config.get("time_period", config.get("budget_duration")))
            except BadDuration:
                continue
        else:
            amount = parse_money(config)
        if amount is None or amount < 0:
            continue
        specs[str(model)] = BudgetSpec(KIND, f"{api_key_hash}:{model}", amount, anchor=key_spec.anchor, duration=period)
    return specs
